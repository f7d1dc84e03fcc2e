// The cluster DNS zone and the server's answers (pure: zone.ts computes, respond() answers bytes).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { respond } from './server.js';
import { computeZone, resolvConf } from './zone.js';
import { TcpFramer, decodeMessage, fitUdp, frameTcp, rcodeOf } from './wire.js';

const zone = computeZone({
  services: [
    {
      namespace: 'default',
      name: 'echo',
      clusterIPs: ['10.96.0.20'],
      ports: [{ name: 'http', protocol: 'TCP', port: 80 }],
    },
    { namespace: 'default', name: 'hl', clusterIPs: ['None'], ports: [] },
  ],
  slices: [
    {
      namespace: 'default',
      serviceName: 'hl',
      endpoints: [
        { addresses: ['10.244.0.5'], ready: true },
        { addresses: ['10.244.0.6'], ready: false },
      ],
      ports: [{ name: 'web', protocol: 'TCP', port: 8080 }],
    },
  ],
  pods: [{ namespace: 'x', ip: '10.244.0.7' }],
  externals: { 'API.example.com.': ['192.0.2.10'] },
  cnames: {
    'www.example.com': 'edge.example.com',
    'edge.example.com': 'api.example.com',
    'loop1.example.com': 'loop2.example.com',
    'loop2.example.com': 'loop1.example.com',
    'out.example.com': 'elsewhere.example.org',
  },
  externalTtl: 3600,
});

const dataOf = (a: unknown) => (a as { data: unknown }).data;

function ask(name: string, type: 'A' | 'AAAA' | 'SRV' | 'CNAME' = 'A') {
  const q = dnsPacket.encode({
    id: 7,
    type: 'query',
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type }],
  });
  const r = respond(zone, q);
  assert.ok(r && 'packet' in r);
  const d = decodeMessage(dnsPacket.encode(r.packet));
  assert.ok(d.ok);
  return d.packet;
}

describe('cluster DNS zone', () => {
  it('answers Services, headless endpoints, SRV, pods and declared externals', () => {
    assert.deepEqual(
      ask('echo.default.svc.cluster.local').answers?.map((a) => dataOf(a)),
      ['10.96.0.20'],
    );
    assert.deepEqual(
      ask('hl.default.svc.cluster.local').answers?.map((a) => dataOf(a)),
      ['10.244.0.5'],
    );
    const srv = ask('_web._tcp.hl.default.svc.cluster.local', 'SRV');
    assert.deepEqual(
      srv.answers?.map((a) => dataOf(a)),
      [{ priority: 0, weight: 100, port: 8080, target: '10-244-0-5.hl.default.svc.cluster.local' }],
    );
    assert.deepEqual(
      srv.additionals?.map((a) => dataOf(a)),
      ['10.244.0.5'],
    );
    assert.deepEqual(
      ask('10-244-0-7.x.pod.cluster.local').answers?.map((a) => dataOf(a)),
      ['10.244.0.7'],
    );
    const ext = ask('api.EXAMPLE.com');
    assert.equal(ext.questions?.[0]?.name, 'api.EXAMPLE.com', 'the question is echoed as sent');
    assert.deepEqual(
      ext.answers?.map((a) => [a.name, dataOf(a), (a as { ttl?: number }).ttl]),
      [['api.EXAMPLE.com', '192.0.2.10', 3600]],
    );
  });

  it('NXDOMAIN for unknown names, NOERROR without answers for other types and empty non-terminals', () => {
    assert.equal(rcodeOf(ask('nothere.example.com')), 'NXDOMAIN');
    assert.equal(rcodeOf(ask('10-244-0-6.hl.default.svc.cluster.local')), 'NXDOMAIN', 'not ready');
    const aaaa = ask('api.example.com', 'AAAA');
    assert.equal(rcodeOf(aaaa), 'NOERROR');
    assert.equal(aaaa.answers?.length, 0);
    assert.equal(rcodeOf(ask('svc.cluster.local')), 'NOERROR');
  });

  it('FORMERR for a malformed message with a header, silence without one', () => {
    const bad = Buffer.from('0007010000010000000000000377777700', 'hex'); // name runs off the end
    const r = respond(zone, bad);
    assert.ok(r && 'raw' in r);
    const d = decodeMessage(r.raw);
    assert.ok(d.ok);
    assert.equal(rcodeOf(d.packet), 'FORMERR');
    assert.equal(respond(zone, Buffer.from([1, 2, 3])), undefined);
  });

  it('truncates large UDP answers (TC) and frames TCP', () => {
    const big = {
      id: 1,
      type: 'response' as const,
      flags: 0,
      questions: [{ name: 'many.example.com', type: 'A' as const }],
      answers: Array.from({ length: 60 }, (_, i) => ({
        name: 'many.example.com',
        type: 'A' as const,
        ttl: 1,
        data: `192.0.2.${i}`,
      })),
    };
    const fit = fitUdp(big, 512);
    assert.equal(fit.truncated, true);
    const d = decodeMessage(fit.buf);
    assert.ok(
      d.ok && ((d.packet.flags ?? 0) & dnsPacket.TRUNCATED_RESPONSE) !== 0 && d.packet.answers?.length === 0,
    );
    const framer = new TcpFramer();
    const msg = dnsPacket.encode(big);
    const framed = frameTcp(msg);
    assert.deepEqual(framer.push(framed.subarray(0, 5)), []);
    assert.deepEqual(framer.push(framed.subarray(5)), [msg]);
  });

  it('writes the pod resolver with its namespace first on the search path', () => {
    assert.match(
      resolvConf('x', '10.96.0.10'),
      /^search x\.svc\.cluster\.local svc\.cluster\.local cluster\.local$/m,
    );
    assert.match(resolvConf('x', '10.96.0.10'), /^nameserver 10\.96\.0\.10$/m);
  });

  it("follows declared aliases: the CNAME chain, then the target's records", () => {
    const rr = (name: string, type: 'A' | 'CNAME' = 'A') =>
      ask(name, type).answers?.map((a) => `${a.name} ${a.type} ${String(dataOf(a))}`);
    assert.deepEqual(rr('WWW.example.com'), [
      'WWW.example.com CNAME edge.example.com',
      'edge.example.com CNAME api.example.com',
      'api.example.com A 192.0.2.10',
    ]);
    assert.deepEqual(rr('www.example.com', 'CNAME'), ['www.example.com CNAME edge.example.com']);
    // A target outside the zone: the CNAME alone; a loop ends after 8 links.
    assert.deepEqual(rr('out.example.com'), ['out.example.com CNAME elsewhere.example.org']);
    assert.equal(rr('loop1.example.com')?.length, 8);
    assert.equal(rcodeOf(ask('out.example.com')), 'NOERROR');
  });
});

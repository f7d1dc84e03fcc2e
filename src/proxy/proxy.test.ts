// The node proxy's pure parts: snapshot validation and versions, the record queue (bounded, losses
// reported in-band; records rendered by a worker thread), the client ports shared between the
// proxy's threads, the interim relay's fail-closed decision, and L7 records as flows.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { proxyPortsOf } from '../agent/proxy-manager.js';
import { Enricher } from '../observe/enrich.js';
import { compactLine } from '../observe/format.js';
import { l7Flow } from '../observe/l7.js';
import type { PortL7Policy, ProxySnapshot } from '../policy/l7/types.js';
import { Worker } from 'node:worker_threads';
import { LocalClientPorts, SharedClientPorts } from './client-ports.js';
import {
  protocolErrorRecord,
  recordEnds,
  requestFacts,
  requestRecord,
  responseRecord,
} from './http/records.js';
import { RecordQueue, parseRecordLine, recordLine, type RecordSink } from './records.js';
import { parseSnapshot, SnapshotStore } from './snapshot.js';
import type { L7Record } from './types.js';

const origin = { kind: 'CiliumNetworkPolicy' as const, namespace: 'app', name: 'p', cookie: 7 };
const port80 = (ruleSets: PortL7Policy['ruleSets']): PortL7Policy => ({
  protocol: 'TCP',
  port: 80,
  parser: 'http',
  proxyPort: 10000,
  ruleSets,
});
const snapshot = (version: number, ingress: PortL7Policy[] = [port80([{ origin }])]): ProxySnapshot => ({
  version,
  endpoints: [
    {
      endpointId: 3,
      namespace: 'app',
      pod: 'server',
      identity: 256,
      ips: ['10.244.0.3', 'fd00::3'],
      ingress,
      egress: [],
    },
  ],
});

describe('snapshots', () => {
  it('are validated field by field', () => {
    assert.deepEqual(parseSnapshot(snapshot(1)), snapshot(1));
    assert.throws(
      () => parseSnapshot({ version: 1, endpoints: [{ ...snapshot(1).endpoints[0], ips: 'x' }] }),
      {
        code: 'ERR_PROXY_SNAPSHOT_INVALID',
      },
    );
    assert.throws(
      () => parseSnapshot(snapshot(1, [{ ...port80([{ origin }]), parser: 'kafka' as 'http' }])),
      (err: { code: string; location: { field: string } }) =>
        err.code === 'ERR_PROXY_SNAPSHOT_INVALID' && err.location.field === 'endpoints.0.ingress.0.parser',
    );
  });

  it('answer by address and by endpoint, direction and port; versions only grow', () => {
    const s = new SnapshotStore();
    assert.equal(s.loaded, false);
    s.apply(snapshot(2));
    assert.equal(s.endpointByIp('fd00::3')?.pod, 'server');
    assert.equal(s.endpointByIp('10.244.0.9'), undefined);
    assert.equal(s.portPolicy(3, 'ingress', 80)?.proxyPort, 10000);
    assert.equal(s.portPolicy(3, 'egress', 80), undefined);
    assert.throws(() => s.apply(snapshot(1)), { code: 'ERR_PROXY_SNAPSHOT_STALE' });
    s.apply(snapshot(2, []));
    assert.equal(s.portPolicy(3, 'ingress', 80), undefined, 'the same version again replaces the content');
    assert.equal(s.version, 2);
  });
});

class Sink implements RecordSink {
  lines: unknown[] = [];
  full = false;
  #drain: (() => void) | undefined;
  writes = 0;
  write(text: string): boolean {
    this.writes++;
    for (const line of text.split('\n')) if (line !== '') this.lines.push(parseRecordLine(line));
    return !this.full;
  }
  once(_: 'drain', cb: () => void): void {
    this.#drain = cb;
  }
  drain(): void {
    this.full = false;
    const cb = this.#drain;
    this.#drain = undefined;
    cb?.();
  }
}

const record = (n: number): L7Record => ({
  timeNs: '1700000000123456789',
  type: 'REQUEST',
  direction: 'ingress',
  endpointId: 3,
  verdict: 'FORWARDED',
  source: { ip: '10.244.0.2', port: 40000 + n, identity: 257 },
  destination: { ip: '10.244.0.3', port: 80, identity: 256 },
  http: { method: 'GET', url: 'http://server/public', protocol: 'HTTP/1.1', headers: [] },
  policy: origin,
});

describe('the record queue', () => {
  it('keeps records for a late reader, sheds beyond its bound and says so in-band', () => {
    const q = new RecordQueue(2);
    for (let i = 0; i < 5; i++) q.push(record(i));
    assert.deepEqual([q.waiting, q.lost], [2, 3]);
    const sink = new Sink();
    q.attach(sink);
    assert.deepEqual(
      sink.lines.map((l) => ('lost' in (l as object) ? `lost ${(l as { lost: number }).lost}` : 'record')),
      ['lost 3', 'record', 'record'],
    );
    assert.equal(q.sent, 2);
  });

  it('waits for a full reader to drain, never blocking the proxy', async () => {
    const q = new RecordQueue(10);
    const sink = new Sink();
    q.attach(sink);
    sink.full = true;
    q.push(record(1));
    await new Promise((r) => setImmediate(r));
    q.push(record(2));
    await new Promise((r) => setImmediate(r));
    assert.equal(sink.lines.length, 1);
    assert.equal(q.waiting, 1);
    sink.drain();
    assert.equal(sink.lines.length, 2);
    assert.equal(q.waiting, 0);
  });

  it('sends the records of one turn of the event loop in one write', async () => {
    const q = new RecordQueue(100);
    const sink = new Sink();
    q.attach(sink);
    for (let i = 0; i < 50; i++) q.push(record(i));
    assert.equal(sink.writes, 0, 'nothing written synchronously');
    await new Promise((r) => setImmediate(r));
    assert.equal(sink.writes, 1);
    assert.equal(sink.lines.length, 50);
    assert.equal(q.sent, 50);
  });
});

describe('records from a proxy worker (rendered lines, several at once)', () => {
  it('are kept or shed whole, counted per record, and reach the reader as lines', () => {
    const q = new RecordQueue(4);
    const chunk = (a: number, n: number) =>
      Array.from({ length: n }, (_, i) => recordLine(record(a + i)) + '\n').join('');
    q.pushLines(chunk(0, 3), 3);
    q.pushLines(chunk(3, 2), 2); // 3 + 2 > 4: shed, both counted
    q.push(record(5));
    assert.deepEqual([q.waiting, q.lost], [4, 2]);
    const sink = new Sink();
    q.attach(sink);
    assert.deepEqual(
      sink.lines.map((l) =>
        'lost' in (l as object)
          ? `lost ${(l as { lost: number }).lost}`
          : String((l as { record: L7Record }).record.source.port - 40000),
      ),
      ['lost 2', '0', '1', '2', '5'],
    );
    assert.equal(q.sent, 4);
  });
});

describe('client ports the upstream connector avoids', () => {
  it('one thread: by address and port', () => {
    const c = new LocalClientPorts();
    c.add('10.0.0.1', 25000);
    c.add('10.0.0.1', 25000);
    c.remove('10.0.0.1', 25000);
    assert.equal(c.has('10.0.0.1', 25000), true);
    assert.equal(c.has('10.0.0.2', 25000), false);
    c.remove('10.0.0.1', 25000);
    assert.equal(c.has('10.0.0.1', 25000), false);
  });

  it('several threads: a port one thread holds is avoided by every thread', async () => {
    const buffer = SharedClientPorts.buffer();
    const here = new SharedClientPorts(buffer);
    // A real second thread adds port 25001 on the shared table (as its ProxyServer would).
    const w = new Worker(
      `const { workerData, parentPort } = require('node:worker_threads');
       import(workerData.url).then((m) => {
         new m.SharedClientPorts(workerData.buffer).add('10.0.0.1', 25001);
         parentPort.postMessage('added');
       });`,
      { eval: true, workerData: { buffer, url: new URL('./client-ports.js', import.meta.url).href } },
    );
    await new Promise((resolve) => w.once('message', resolve));
    await w.terminate();
    assert.equal(here.has('10.0.0.9', 25001), true, 'seen by this thread, whatever the address');
    here.remove('10.0.0.1', 25001);
    assert.equal(here.has('10.0.0.9', 25001), false);
  });
});

describe('L7 records become flows', () => {
  const enricher = new Enricher({
    endpointByIfindex: () => undefined,
    endpointByIp: (ip) =>
      ip === '10.244.0.3'
        ? { id: 3, namespace: 'app', pod: 'server', identity: 256, labels: ['k8s:role=server'] }
        : undefined,
    identityLabels: (id) => (id === 257 ? ['k8s:role=client'] : undefined),
    rule: (c) =>
      c === 7
        ? {
            kind: 'CiliumNetworkPolicy',
            namespace: 'app',
            name: 'p',
            direction: 'ingress',
            ruleIndex: 0,
            deny: false,
          }
        : undefined,
  });

  it('a request: Type L7, Hubble fields, the rule that allowed it', () => {
    const f = l7Flow(record(1), { nodeName: 'node1', enricher, uuid: () => 'u' });
    assert.equal(f.Type, 'L7');
    assert.equal(f.event_type.type, 129);
    assert.equal(f.verdict, 'FORWARDED');
    assert.equal(f.traffic_direction, 'INGRESS');
    assert.equal(f.time, '2023-11-14T22:13:20.123456789Z');
    assert.deepEqual(f.l7, {
      type: 'REQUEST',
      latency_ns: 0,
      http: { code: 0, method: 'GET', url: 'http://server/public', protocol: 'HTTP/1.1', headers: [] },
    });
    assert.equal(f.destination.pod_name, 'server');
    assert.deepEqual(f.source.labels, ['k8s:role=client']);
    assert.equal(f.ingress_allowed_by?.[0]?.name, 'p');
    assert.match(
      compactLine(f),
      /: 10\.244\.0\.2:\d+ \(ID:257\) -> app\/server:80 \(ID:256\) http-request FORWARDED \(HTTP\/1\.1 GET http:\/\/server\/public\) by CiliumNetworkPolicy app\/p ingress\[0\]$/,
    );
  });

  it('a denied request is DROPPED (as Hubble maps Denied), a response shows code and latency', () => {
    const denied = l7Flow(
      { ...record(2), verdict: 'DENIED', detail: 'l7_policy_denied' },
      { nodeName: 'n', enricher },
    );
    assert.equal(denied.verdict, 'DROPPED');
    assert.equal(denied.ingress_denied_by?.[0]?.name, 'p');
    assert.equal(denied.weir.detail, 'l7_policy_denied');
    const res = l7Flow(
      {
        ...record(3),
        type: 'RESPONSE',
        latencyNs: 3_200_000,
        http: { method: 'GET', url: 'http://server/public', protocol: 'HTTP/1.1', code: 200, headers: [] },
      },
      { nodeName: 'n', enricher },
    );
    assert.equal(res.is_reply, true);
    assert.equal(res.Summary, 'HTTP/1.1 200 3ms (GET http://server/public)');
    // A response goes from the server to the client (Hubble: source and destination swapped),
    // and prints client <- server.
    assert.equal(res.source.pod_name, 'server');
    assert.equal(res.IP?.source, '10.244.0.3');
    assert.deepEqual(res.l4?.TCP, { source_port: 80, destination_port: record(3).source.port });
    assert.match(
      compactLine(res),
      /10\.244\.0\.2:\d+ \(ID:257\) <- app\/server:80 \(ID:256\) http-response FORWARDED/,
    );
  });
});

describe('the proxy port range', () => {
  it('gives the first three ports (HTTP ingress, HTTP egress, DNS); bad ranges are refused', () => {
    assert.deepEqual(proxyPortsOf('10000-20000'), { ingress: 10000, egress: 10001, dns: 10002 });
    for (const bad of ['10000', '20000-10000', '80-90', '10000-10000', '10000-10001', '10000-70000'])
      assert.throws(() => proxyPortsOf(bad), { code: 'ERR_AGENT_CONFIG' }, bad);
  });
});

describe('record lines', () => {
  it('read back as the record JSON would carry, for every record the HTTP engine makes, whatever its text', () => {
    const conn = {
      direction: 'egress' as const,
      endpoint: { id: 7, identity: 300, namespace: 'app', pod: 'client' },
      remoteIdentity: 2,
      src: { ip: 'fd00::2', port: 41000 },
      dst: { ip: 'fd00::3', port: 8080 },
      policy: () => undefined,
    };
    const ends = recordEnds(conn);
    const odd = 'q="a\\b"\t\u0001\u00e9\u{1f600}\ud800x';
    const f = requestFacts(conn, ends, {
      method: 'PO"ST',
      scheme: 'http',
      target: `/p?${odd}`,
      authority: 'h\u00e9st',
      protocol: 'HTTP/2',
      headers: [
        { key: 'user-agent', value: odd },
        { key: 'x', value: '' },
      ],
    });
    const clusterwide = { kind: 'CiliumClusterwideNetworkPolicy' as const, name: 'all', cookie: 9 };
    const records: L7Record[] = [
      record(1),
      requestRecord(f, 'FORWARDED', origin, undefined, 2),
      requestRecord(f, 'DENIED', clusterwide, `l7_policy_denied:${odd}`),
      responseRecord(f, 'FORWARDED', 200, origin, undefined, [{ key: 'content-type', value: odd }]),
      responseRecord(f, 'ERROR', 502, undefined, 'upstream_reset'),
      protocolErrorRecord(conn, ends, 'HTTP/1.1', 400, 'downstream_protocol_error:HPE_INVALID_METHOD'),
      Object.assign(responseRecord(f, 'FORWARDED', 204, origin, undefined), { latencyNs: Number.NaN }),
      // Other shapes (DNS, Gateway) go through JSON.stringify.
      { ...record(3), http: undefined, transport: 'UDP', dns: { query: 'a.example.', qtypes: ['A'] } },
      {
        ...record(4),
        route: { kind: 'HTTPRoute', namespace: 'app', name: 'r', rule: 0 },
        backend: 'app/s:80',
      },
    ];
    // Plain HTTP records go compact, the others (odd text, DNS, Gateway) as JSON.stringify.
    const plain: L7Record = {
      ...record(7),
      http: {
        method: 'GET',
        url: 'http://h/p\\q"',
        protocol: 'HTTP/1.1',
        headers: [{ key: 'a', value: 'b\\"c\u0001é😀' }],
      },
    };
    const plainResponse: L7Record = {
      ...record(8),
      type: 'RESPONSE',
      verdict: 'DENIED',
      policy: clusterwide,
      detail: 'l7_policy_denied',
      latencyNs: 12345,
      http: { method: 'GET', url: 'http://h/', protocol: 'HTTP/2', code: 403, headers: [] },
    };
    records.push(plain, plainResponse, { ...record(6), policy: undefined, detail: 'x' });
    const compact = records.map((r) => recordLine(r).startsWith('H'));
    assert.deepEqual(compact, [
      true,
      false,
      false,
      false,
      false,
      true,
      false,
      false,
      false,
      true,
      true,
      true,
    ]);
    for (const r of records) {
      const line = recordLine(r);
      assert.ok(!line.includes('\n'), line);
      assert.deepEqual(parseRecordLine(line), JSON.parse(JSON.stringify({ record: r })), line);
      if (!line.startsWith('H')) assert.equal(line, JSON.stringify({ record: r }));
    }
  });
});

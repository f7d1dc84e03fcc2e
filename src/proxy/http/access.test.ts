// The HTTP engine's access-log entries, with real sockets on loopback: one entry per request when it
// ends, with the status the client got, the bytes both ways, the upstream, the rule, and Envoy's
// response flags for the ways a request can end badly.
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import {
  CLIENT_IDENTITY,
  SERVER_IDENTITY,
  eventually,
  portPolicy,
  rawExchange,
  request,
  startProxy,
  startUpstream,
  type ProxyHarness,
  type TestUpstream,
} from '../../../test/support/http-proxy.js';
import type { AccessRecord } from '../types.js';

let up: TestUpstream;
let px: ProxyHarness;

before(async () => {
  up = await startUpstream();
  px = await startProxy({ upstream: { host: '127.0.0.1', port: up.port } });
});
after(async () => {
  await px.close();
  await up.close();
});
beforeEach(() => {
  px.access.length = 0;
  px.records.length = 0;
  px.policy = portPolicy([{ method: 'GET', path: '/public.*' }, { method: 'POST|GET' }], { cookie: 9 });
});

const only = async (n = 1): Promise<AccessRecord[]> => {
  await eventually(() => px.access.length >= n, 10_000, `${n} access entries`);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(px.access.length, n, JSON.stringify(px.access));
  return px.access;
};

describe('access log entries (HTTP/1.1)', () => {
  it('an allowed request: status, body bytes both ways, upstream, client, identities, rule', async () => {
    const res = await request(px.port, {
      method: 'POST',
      path: '/public/a?x=1',
      headers: { host: 'svc:8080', 'user-agent': 'probe/1', 'x-request-id': 'r-1' },
      body: 'hello world',
    });
    assert.equal(res.status, 200);
    const [a] = await only();
    assert.ok(a);
    assert.equal(a.method, 'POST');
    assert.equal(a.path, '/public/a?x=1');
    assert.equal(a.authority, 'svc:8080');
    assert.equal(a.protocol, 'HTTP/1.1');
    assert.equal(a.code, 200);
    assert.equal(a.verdict, 'FORWARDED');
    assert.deepEqual(a.flags, []);
    assert.equal(a.bytesReceived, 11);
    assert.equal(a.bytesSent, res.body.length);
    assert.deepEqual(a.upstream, { ip: '127.0.0.1', port: up.port });
    assert.equal(a.source.ip, '127.0.0.1');
    assert.equal(a.source.identity, CLIENT_IDENTITY);
    assert.equal(a.destination.identity, SERVER_IDENTITY);
    assert.equal(a.policy?.name, 'l7');
    assert.equal(a.httpRule, 1, 'the second HTTP rule (POST|GET) allowed it');
    assert.equal(a.userAgent, 'probe/1');
    assert.equal(a.requestId, 'r-1');
    assert.ok(a.durationNs > 0);
    const start = Number(BigInt(a.startNs) / 1_000_000n);
    assert.ok(Math.abs(start - Date.now()) < 5000, 'start time is wall clock');
  });

  it('a denied request: 403, the body of the answer, no upstream', async () => {
    px.policy = portPolicy([{ method: 'GET', path: '/public' }]);
    const res = await request(px.port, { method: 'DELETE', path: '/private' });
    assert.equal(res.status, 403);
    const [a] = await only();
    assert.equal(a?.code, 403);
    assert.equal(a?.verdict, 'DENIED');
    assert.equal(a?.detail, 'l7_policy_denied');
    assert.equal(a?.bytesSent, 'Access denied\r\n'.length);
    assert.equal(a?.upstream, undefined);
    assert.equal(a?.policy?.name, 'l7');
    assert.equal(a?.httpRule, undefined);
  });

  it('one entry per request on a keep-alive connection, large bodies counted in full', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    await request(px.port, { path: '/big?n=300000', agent });
    await request(px.port, { path: '/nothing-allowed-here', method: 'PUT', agent });
    await request(px.port, { path: '/public/b', agent });
    agent.destroy();
    const all = await only(3);
    assert.deepEqual(
      all.map((a) => [a.path, a.code, a.bytesSent]),
      [
        ['/big?n=300000', 200, 300000],
        ['/nothing-allowed-here', 403, 15],
        ['/public/b', 200, 'ok GET /public/b'.length],
      ],
    );
  });

  it('upstream failures: UC for a reset before the response, UC with the status for a cut body', async () => {
    const reset = await request(px.port, { path: '/reset' });
    assert.equal(reset.status, 502);
    const [a] = await only();
    assert.equal(a?.code, 502);
    assert.equal(a?.verdict, 'ERROR');
    assert.deepEqual(a?.flags, ['UC']);
    assert.equal(a?.detail, 'upstream_reset');
    px.access.length = 0;
    await request(px.port, { path: '/cut' }).catch(() => undefined);
    const [b] = await only();
    assert.equal(b?.code, 200, 'the status the client got');
    assert.deepEqual(b?.flags, ['UC']);
    assert.equal(b?.bytesSent, 10);
  });

  it('UF when the upstream refuses the connection', async () => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const other = await startProxy({ upstream: { host: '127.0.0.1', port }, policy: portPolicy([{}]) });
    try {
      const res = await request(other.port, { path: '/x' });
      assert.equal(res.status, 502);
      await eventually(() => other.access.length === 1);
      assert.deepEqual(other.access[0]?.flags, ['UF']);
      assert.equal(other.access[0]?.upstream?.port, port, 'it was sent towards the upstream');
    } finally {
      await other.close();
    }
  });

  it('DC with status 0 when the client leaves before the response', async () => {
    const s = net.connect(px.port, '127.0.0.1');
    s.on('error', () => undefined);
    s.write('GET /hang HTTP/1.1\r\nHost: svc\r\n\r\n');
    await eventually(() => up.seen.some((x) => x.url === '/hang'));
    s.destroy();
    const [a] = await only();
    assert.equal(a?.code, 0);
    assert.deepEqual(a?.flags, ['DC']);
    assert.equal(a?.verdict, 'FORWARDED');
  });

  it('DPE for a malformed request, with no request behind it', async () => {
    const r = await rawExchange(
      px.port,
      'GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n',
    );
    assert.match(r.received, /^HTTP\/1\.1 400 /);
    const [a] = await only();
    assert.equal(a?.code, 400);
    assert.equal(a?.method, '');
    assert.deepEqual(a?.flags, ['DPE']);
    assert.match(a?.detail ?? '', /^downstream_protocol_error/);
  });
});

describe('access log entries (HTTP/2)', () => {
  it('allowed and denied streams on one session, with bytes and status', async () => {
    const h2up = http2.createServer();
    h2up.on('stream', (stream, headers) => {
      stream.respond({ ':status': 200, 'content-type': 'text/plain' });
      stream.end(`ok ${headers[':path']}`);
    });
    await new Promise<void>((r) => h2up.listen(0, '127.0.0.1', r));
    const p2 = await startProxy({
      upstream: { host: '127.0.0.1', port: (h2up.address() as net.AddressInfo).port },
      policy: portPolicy([{ path: '/ok' }]),
    });
    const client = http2.connect(`http://127.0.0.1:${p2.port}`);
    const get = (path: string, body?: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = client.request({ ':path': path, ':method': body ? 'POST' : 'GET' });
        let status = 0;
        let text = '';
        req.on('response', (h) => (status = Number(h[':status'])));
        req.on('data', (d: Buffer) => (text += d.toString()));
        req.on('end', () => resolve({ status, body: text }));
        req.on('error', reject);
        req.end(body);
      });
    try {
      assert.deepEqual(await get('/ok', 'abcdef'), { status: 200, body: 'ok /ok' });
      assert.equal((await get('/no')).status, 403);
      await eventually(() => p2.access.length === 2);
      const [a, b] = p2.access;
      assert.deepEqual(
        [a?.protocol, a?.code, a?.bytesReceived, a?.bytesSent, a?.upstream !== undefined, a?.flags.length],
        ['HTTP/2', 200, 6, 6, true, 0],
      );
      assert.deepEqual([b?.code, b?.verdict, b?.bytesSent, b?.upstream], [403, 'DENIED', 15, undefined]);
    } finally {
      client.close();
      await p2.close();
      await new Promise<void>((r) => h2up.close(() => r()));
    }
  });
});

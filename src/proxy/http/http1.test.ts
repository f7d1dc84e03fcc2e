// The HTTP engine over HTTP/1.1 with real sockets on loopback: a client, the handler behind a plain
// net.Server, a real upstream. What the client receives, what the upstream sees, and the records.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import {
  CLIENT_IDENTITY,
  SERVER_IDENTITY,
  eventually,
  headerValues,
  portPolicy,
  rawExchange,
  request,
  startProxy,
  startUpstream,
  type ProxyHarness,
  type TestUpstream,
} from '../../../test/support/http-proxy.js';

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
  up.seen.length = 0;
  px.records.length = 0;
  px.policy = portPolicy([
    { method: 'GET', path: '/public.*' },
    { method: 'POST', path: '/echo|/upload' },
  ]);
});

describe('HTTP/1.1: verdicts', () => {
  it('keeps one keep-alive connection usable across allowed and denied requests', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const before = px.handler.stats().connectionsTotal;
    const paths = ['/public/a', '/private', '/public/b', '/admin', '/public/c'];
    const got = [];
    for (const path of paths) got.push(await request(px.port, { path, agent }));
    agent.destroy();
    assert.deepEqual(
      got.map((r) => r.status),
      [200, 403, 200, 403, 200],
    );
    assert.equal(got[1]!.body.toString(), 'Access denied\r\n');
    assert.equal(got[1]!.headers['content-type'], 'text/plain');
    assert.equal(got[0]!.body.toString(), 'ok GET /public/a');
    assert.deepEqual(
      up.seen.map((s) => s.url),
      ['/public/a', '/public/b', '/public/c'],
    );
    assert.equal(
      px.handler.stats().connectionsTotal - before,
      1,
      'one client connection for all five requests',
    );
    assert.equal(new Set(up.seen.map((s) => s.remotePort)).size, 1, 'one upstream connection, reused');
  });

  it('answers pipelined requests in order, each judged', async () => {
    const req = (path: string) => `GET ${path} HTTP/1.1\r\nHost: svc\r\n\r\n`;
    const { received } = await rawExchange(px.port, req('/public/1') + req('/nope') + req('/public/2'), {
      until: (r) => r.includes('ok GET /public/2') && r.endsWith('0\r\n\r\n'),
    });
    const statuses = [...received.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
    assert.deepEqual(statuses, ['200', '403', '200']);
    assert.ok(received.indexOf('ok GET /public/1') < received.indexOf('Access denied'));
    assert.ok(received.indexOf('Access denied') < received.indexOf('ok GET /public/2'));
    assert.deepEqual(
      up.seen.map((s) => s.url),
      ['/public/1', '/public/2'],
    );
  });

  it('changes the verdict when the policy changes between two requests on one connection', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const a = await request(px.port, { path: '/public/x', agent });
    px.policy = portPolicy([{ method: 'GET', path: '/other' }]);
    const b = await request(px.port, { path: '/public/x', agent });
    px.policy = undefined;
    const c = await request(px.port, { path: '/other', agent });
    agent.destroy();
    assert.deepEqual([a.status, b.status, c.status], [200, 403, 403]);
  });

  it('judges the peer identity: rule sets for other identities do not apply', async () => {
    px.policy = portPolicy([{}], { identities: [CLIENT_IDENTITY + 1] });
    assert.equal((await request(px.port, { path: '/public/x' })).status, 403);
    px.policy = portPolicy([{}], { identities: [CLIENT_IDENTITY] });
    assert.equal((await request(px.port, { path: '/anything' })).status, 200);
  });

  it('answers HEAD without a body, allowed or denied', async () => {
    px.policy = portPolicy([{ method: 'HEAD', path: '/public' }]);
    const ok = await request(px.port, { method: 'HEAD', path: '/public' });
    const no = await request(px.port, { method: 'HEAD', path: '/private' });
    assert.deepEqual([ok.status, ok.body.length, no.status, no.body.length], [200, 0, 403, 0]);
  });
});

describe('HTTP/1.1: forwarding', () => {
  it('streams chunked bodies both ways and relays trailers', async () => {
    px.policy = portPolicy([{}]);
    const parts = Array.from({ length: 50 }, (_, i) => `chunk-${i};`);
    const echo = await request(px.port, {
      method: 'POST',
      path: '/echo',
      headers: { 'transfer-encoding': 'chunked' },
      body: parts,
    });
    assert.equal(echo.status, 200);
    assert.equal(echo.body.toString(), parts.join(''));
    assert.equal(echo.headers['transfer-encoding'], 'chunked');
    // The upstream gets the body framed once: chunked, or with its length when it arrived whole.
    const framing = [
      ...headerValues(up.seen[0]!.rawHeaders, 'transfer-encoding'),
      ...headerValues(up.seen[0]!.rawHeaders, 'content-length'),
    ];
    assert.ok(
      framing.length === 1 && (framing[0] === 'chunked' || framing[0] === String(parts.join('').length)),
      String(framing),
    );
    const tr = await request(px.port, { path: '/trailers' });
    assert.equal(tr.body.toString(), 'part1;part2');
    assert.equal(tr.trailers['x-checksum'], 'abc123');
  });

  it('holds a large download back while the client does not read (backpressure), then delivers all of it', async () => {
    const n = 128 * 1024 * 1024;
    px.policy = portPolicy([{}]);
    const s = net.connect(px.port, '127.0.0.1');
    s.write(`GET /big?n=${n} HTTP/1.1\r\nHost: svc\r\n\r\n`);
    let received = 0;
    s.on('data', (d) => (received += d.length));
    await eventually(() => received > 1024 * 1024, 5000, 'first MiB');
    s.pause();
    await new Promise((r) => setTimeout(r, 500));
    const seen = up.seen.find((x) => x.url.startsWith('/big'))!;
    assert.ok(seen.sent < 48 * 1024 * 1024, `upstream wrote ${seen.sent} bytes while the client read none`);
    s.resume();
    await eventually(() => received >= n, 60_000, 'the whole body');
    s.destroy();
    assert.equal(seen.sent, n);
  });

  it('holds a large upload back while the upstream does not read (backpressure)', async () => {
    px.policy = portPolicy([{}]);
    const s = net.connect(px.port, '127.0.0.1');
    s.on('error', () => {});
    const total = 256 * 1024 * 1024;
    s.write(`POST /stall HTTP/1.1\r\nHost: svc\r\nContent-Length: ${total}\r\n\r\n`);
    const block = Buffer.alloc(1024 * 1024, 'u');
    let queued = 0;
    while (queued < total && s.write(block)) queued += block.length;
    await new Promise((r) => setTimeout(r, 800));
    const flushed = s.bytesWritten;
    assert.ok(flushed < 64 * 1024 * 1024, `${flushed} bytes left the client while the upstream read none`);
    s.destroy();
  });

  it('uploads a large body intact', async () => {
    px.policy = portPolicy([{}]);
    const block = Buffer.alloc(1024 * 1024, 'b');
    const blocks = Array.from({ length: 32 }, () => block);
    const r = await request(px.port, { method: 'POST', path: '/upload', body: blocks });
    assert.equal(r.status, 200);
    assert.equal(up.seen[0]!.bodyBytes, 32 * 1024 * 1024);
  });

  it('applies headerMatches REPLACE and DELETE to what the upstream receives', async () => {
    px.policy = portPolicy([
      {
        method: 'GET',
        headerMatches: [
          { name: 'Authorization', value: 'Bearer 123456', mismatch: 'REPLACE' },
          { name: 'X-Debug', value: 'off', mismatch: 'DELETE' },
        ],
      },
    ]);
    const r = await request(px.port, {
      path: '/h',
      headers: { authorization: 'Bearer wrong', 'x-debug': 'on', 'x-keep': '1' },
    });
    assert.equal(r.status, 200);
    const raw = up.seen[0]!.rawHeaders;
    assert.deepEqual(headerValues(raw, 'authorization'), ['Bearer 123456']);
    assert.deepEqual(headerValues(raw, 'x-debug'), []);
    assert.deepEqual(headerValues(raw, 'x-keep'), ['1']);
    const noAuth = await request(px.port, { path: '/h2' });
    assert.equal(noAuth.status, 200);
    assert.deepEqual(headerValues(up.seen[1]!.rawHeaders, 'authorization'), ['Bearer 123456']);
  });

  it('strips hop-by-hop fields, keeps Host as sent and adds no X-Forwarded-For', async () => {
    const { received } = await rawExchange(
      px.port,
      'GET /public/h HTTP/1.1\r\nHost: my.service:8080\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n' +
        'Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nX-End: 2\r\n\r\n',
      { until: (r) => r.includes('ok GET') },
    );
    assert.match(received, /^HTTP\/1\.1 200/);
    const raw = up.seen[0]!.rawHeaders;
    assert.deepEqual(headerValues(raw, 'host'), ['my.service:8080']);
    assert.deepEqual(headerValues(raw, 'x-end'), ['2']);
    for (const h of ['x-hop', 'keep-alive', 'te', 'proxy-connection', 'x-forwarded-for', 'via']) {
      assert.deepEqual(headerValues(raw, h), [], h);
    }
  });

  it('passes field bytes beyond ASCII through unchanged, both ways', async () => {
    const utf8 = Buffer.from('é ü', 'utf8').toString('latin1');
    const { received } = await rawExchange(
      px.port,
      Buffer.from(`GET /public/bytes HTTP/1.1\r\nHost: svc\r\nX-Name: ${utf8}\r\n\r\n`, 'latin1'),
      { until: (r) => r.includes('ok GET') },
    );
    assert.deepEqual(headerValues(up.seen[0]!.rawHeaders, 'x-name'), [utf8]);
    assert.match(received, /^HTTP\/1\.1 200/);
  });

  it('answers Expect: 100-continue itself: 100 then forwarding when allowed, 403 without 100 when denied', async () => {
    const body = 'x'.repeat(1000);
    const head = (path: string) =>
      `POST ${path} HTTP/1.1\r\nHost: svc\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`;
    const ok = await new Promise<string>((resolve) => {
      const s = net.connect(px.port, '127.0.0.1');
      let got = '';
      s.on('data', (d) => {
        got += d.toString();
        if (got.startsWith('HTTP/1.1 100') && !got.includes('\r\n\r\nHTTP')) {
          if (!s.writableEnded && got.indexOf('\r\n\r\n') === got.length - 4) s.write(body);
        }
        if (got.includes('ok POST')) {
          s.destroy();
          resolve(got);
        }
      });
      s.write(head('/upload'));
    });
    assert.match(ok, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200/);
    assert.equal(up.seen[0]!.bodyBytes, body.length);
    assert.deepEqual(headerValues(up.seen[0]!.rawHeaders, 'expect'), []);
    const denied = await rawExchange(px.port, head('/elsewhere'), {
      until: (r) => r.includes('Access denied'),
    });
    assert.match(denied.received, /^HTTP\/1\.1 403 Forbidden\r\n/);
    assert.doesNotMatch(denied.received, /100 Continue/);
  });

  it('opens upstream connections from each client IP, one pool per client IP and destination', async () => {
    px.policy = portPolicy([{}]);
    const pools = px.handler.stats().upstream.h1Pools;
    await request(px.port, { path: '/a', localAddress: '127.0.0.2' });
    await request(px.port, { path: '/b', localAddress: '127.0.0.3' });
    await request(px.port, { path: '/c', localAddress: '127.0.0.2' });
    assert.deepEqual(
      up.seen.map((s) => s.remoteAddress),
      ['127.0.0.2', '127.0.0.3', '127.0.0.2'],
    );
    assert.equal(px.handler.stats().upstream.h1Pools - pools, 2);
  });
});

describe('HTTP/1.1: records', () => {
  it('emits one REQUEST and one RESPONSE record per request, with verdict, code, origin and redacted credentials', async () => {
    await request(px.port, {
      path: '/public/r?q=1',
      headers: { authorization: 'Bearer s3cret', 'x-app': 'demo' },
    });
    await request(px.port, { method: 'DELETE', path: '/public/r' });
    assert.equal(px.records.length, 4);
    const [req, res, dreq, dres] = px.records as [
      (typeof px.records)[0],
      (typeof px.records)[0],
      (typeof px.records)[0],
      (typeof px.records)[0],
    ];
    assert.deepEqual(
      [req.type, req.verdict, req.http?.method, req.http?.url, req.http?.protocol],
      ['REQUEST', 'FORWARDED', 'GET', `http://127.0.0.1:${px.port}/public/r?q=1`, 'HTTP/1.1'],
    );
    assert.deepEqual(
      req.http?.headers.find((h) => h.key === 'authorization'),
      { key: 'authorization', value: '[redacted]' },
    );
    assert.deepEqual(
      req.http?.headers.find((h) => h.key === 'x-app'),
      { key: 'x-app', value: 'demo' },
    );
    assert.ok(!JSON.stringify(px.records).includes('s3cret'));
    assert.deepEqual(
      [req.direction, req.endpointId, req.source.identity, req.destination.identity],
      ['ingress', 7, CLIENT_IDENTITY, SERVER_IDENTITY],
    );
    assert.deepEqual(req.destination, { ip: '127.0.0.1', port: up.port, identity: SERVER_IDENTITY });
    assert.equal(req.policy?.name, 'l7');
    assert.deepEqual([res.type, res.verdict, res.http?.code], ['RESPONSE', 'FORWARDED', 200]);
    assert.ok((res.latencyNs ?? 0) > 0);
    assert.ok(BigInt(res.timeNs) >= BigInt(req.timeNs));
    assert.ok(Math.abs(Number(BigInt(req.timeNs) / 1_000_000n) - Date.now()) < 60_000);
    assert.deepEqual(
      [dreq.verdict, dres.verdict, dres.http?.code, dres.detail, dres.policy?.name],
      ['DENIED', 'DENIED', 403, 'l7_policy_denied', 'l7'],
    );
  });
});

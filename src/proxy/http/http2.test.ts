// The HTTP engine over HTTP/2 cleartext (prior knowledge) with real sockets: node:http2 clients and
// upstreams, and gRPC through it with @grpc/grpc-js as the real client and server (unary, server
// streaming, bidirectional streaming, trailers, error statuses, denied methods).
import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type net from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { eventually, portPolicy, startProxy, type ProxyHarness } from '../../../test/support/http-proxy.js';

interface H2Response {
  status: number;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders | undefined;
  body: Buffer;
  rstCode?: number;
}

/** One request on an open client session. */
function h2request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer | string,
): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const s = session.request(headers, { endStream: body === undefined });
    const chunks: Buffer[] = [];
    let status = 0;
    let rh: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    s.on('response', (h) => {
      status = Number(h[':status']);
      rh = h;
    });
    s.on('trailers', (t) => (trailers = t));
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('close', () =>
      resolve({ status, headers: rh, trailers, body: Buffer.concat(chunks), rstCode: s.rstCode }),
    );
    s.on('error', () => {});
    if (body !== undefined) s.end(body);
    void reject;
  });
}

describe('HTTP/2 cleartext', () => {
  let upstream: http2.Http2Server;
  let px: ProxyHarness;
  const seen: { path: string; headers: http2.IncomingHttpHeaders; body: number }[] = [];

  before(async () => {
    upstream = http2.createServer();
    upstream.on('stream', (stream, headers) => {
      const path = String(headers[':path']);
      const entry = { path, headers, body: 0 };
      seen.push(entry);
      stream.on('data', (d: Buffer) => (entry.body += d.length));
      stream.on('error', () => {});
      if (path === '/hang') return;
      stream.on('end', () => {
        if (path === '/trailers') {
          stream.respond({ ':status': 200, 'content-type': 'text/plain' }, { waitForTrailers: true });
          stream.on('wantTrailers', () => stream.sendTrailers({ 'x-sum': String(entry.body) }));
          stream.end('with trailers');
          return;
        }
        if (path === '/reset') {
          stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
          return;
        }
        stream.respond({ ':status': 200, 'content-type': 'text/plain' });
        stream.end(`ok ${headers[':method']} ${path} ${entry.body}`);
      });
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    px = await startProxy({
      upstream: { host: '127.0.0.1', port: (upstream.address() as net.AddressInfo).port },
    });
  });
  after(async () => {
    await px.close();
    upstream.close();
  });
  beforeEach(() => {
    seen.length = 0;
    px.records.length = 0;
    px.policy = portPolicy([
      { method: 'GET', path: '/public.*' },
      { method: 'POST', path: '/trailers' },
    ]);
  });

  it('judges every stream of one session: allowed ones forwarded, denied ones 403, the session stays up', async () => {
    const session = http2.connect(`http://127.0.0.1:${px.port}`);
    const [a, b, c] = await Promise.all([
      h2request(session, { ':path': '/public/1' }),
      h2request(session, { ':path': '/private' }),
      h2request(session, { ':path': '/public/2', ':authority': 'svc.example' }),
    ]);
    const d = await h2request(session, { ':path': '/public/3' });
    session.close();
    assert.deepEqual([a.status, b.status, c.status, d.status], [200, 403, 200, 200]);
    assert.equal(b.body.toString(), 'Access denied\r\n');
    assert.equal(b.headers['content-type'], 'text/plain');
    assert.equal(a.body.toString(), 'ok GET /public/1 0');
    assert.deepEqual(seen.map((s) => s.path).sort(), ['/public/1', '/public/2', '/public/3']);
    assert.equal(seen.find((s) => s.path === '/public/2')?.headers[':authority'], 'svc.example');
    const req = px.records.find((r) => r.type === 'REQUEST' && r.http?.url.endsWith('/public/2'));
    assert.deepEqual([req?.http?.protocol, req?.http?.url], ['HTTP/2', 'http://svc.example/public/2']);
    assert.equal(px.handler.stats().connectionsTotal >= 1, true);
  });

  it('forwards a request body and relays response trailers', async () => {
    const session = http2.connect(`http://127.0.0.1:${px.port}`);
    const body = Buffer.alloc(300_000, 7);
    const r = await h2request(session, { ':path': '/trailers', ':method': 'POST' }, body);
    session.close();
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'with trailers');
    assert.equal(r.trailers?.['x-sum'], String(body.length));
  });

  it('applies header operations to the upstream request', async () => {
    px.policy = portPolicy([{ headerMatches: [{ name: 'x-tenant', value: 'blue', mismatch: 'REPLACE' }] }]);
    const session = http2.connect(`http://127.0.0.1:${px.port}`);
    const r = await h2request(session, { ':path': '/x', 'x-tenant': 'red' });
    session.close();
    assert.equal(r.status, 200);
    assert.equal(seen[0]?.headers['x-tenant'], 'blue');
  });

  it('resets the client stream when the upstream resets it before answering: 502', async () => {
    px.policy = portPolicy([{}]);
    const session = http2.connect(`http://127.0.0.1:${px.port}`);
    const r = await h2request(session, { ':path': '/reset' });
    const ok = await h2request(session, { ':path': '/after' });
    session.close();
    assert.equal(r.status, 502);
    assert.equal(ok.status, 200);
  });

  it('cancels the upstream stream when the client resets its stream', async () => {
    px.policy = portPolicy([{}]);
    const session = http2.connect(`http://127.0.0.1:${px.port}`);
    const s = session.request({ ':path': '/hang' });
    s.on('error', () => {});
    await eventually(() => seen.some((x) => x.path === '/hang'), 3000, 'the upstream stream');
    assert.equal(px.handler.stats().upstream.h2Streams, 1);
    s.close(http2.constants.NGHTTP2_CANCEL);
    await eventually(
      () => px.handler.stats().upstream.h2Streams === 0,
      3000,
      'the upstream stream to be cancelled',
    );
    await eventually(() => px.handler.stats().requestsActive === 0, 3000, 'no request in flight');
    session.close();
  });
});

describe('HTTP/2 upstream timers', () => {
  let upstream: http2.Http2Server;
  let px: ProxyHarness;
  let openSessions = 0;

  before(async () => {
    upstream = http2.createServer();
    upstream.on('session', (s) => {
      openSessions++;
      s.on('close', () => openSessions--);
    });
    upstream.on('stream', (stream, headers) => {
      stream.on('error', () => {});
      if (headers[':path'] === '/hang') return;
      stream.respond({ ':status': 200 });
      stream.end('ok');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    px = await startProxy({
      upstream: { host: '127.0.0.1', port: (upstream.address() as net.AddressInfo).port },
      policy: portPolicy([{}]),
      limits: { upstreamHeadersTimeoutMs: 300, upstreamKeepAliveMs: 300 },
    });
  });
  after(async () => {
    await px.close();
    upstream.close();
  });

  it('an upstream that does not answer in time: 504, the upstream stream is cancelled', async () => {
    const session = http2.connect(`http://127.0.0.1:${px.port}`);
    const started = performance.now();
    const r = await h2request(session, { ':path': '/hang' });
    const took = performance.now() - started;
    assert.equal(r.status, 504);
    assert.ok(took >= 290 && took < 3000, `answered after ${took.toFixed(0)} ms`);
    const ok = await h2request(session, { ':path': '/after' });
    assert.equal(ok.status, 200);
    session.close();
    await eventually(() => px.handler.stats().upstream.h2Streams === 0, 3000, 'no upstream stream');
    const rec = px.records.find((x) => x.type === 'RESPONSE' && x.http?.code === 504);
    assert.equal(rec?.verdict, 'ERROR');
  });

  it('an idle upstream session is closed after the keep-alive period', async () => {
    const session = http2.connect(`http://127.0.0.1:${px.port}`);
    assert.equal((await h2request(session, { ':path': '/x' })).status, 200);
    session.close();
    assert.equal(px.handler.stats().upstream.h2Sessions, 1);
    await eventually(() => openSessions === 0, 5000, 'the idle upstream session to be closed');
    await eventually(() => px.handler.stats().upstream.h2Sessions === 0, 3000, 'the pool to forget it');
  });
});

describe('gRPC through the proxy (@grpc/grpc-js client and server)', () => {
  const pass = (b: Buffer) => b;
  const method = (name: string, requestStream: boolean, responseStream: boolean) => ({
    path: `/weir.test.Echo/${name}`,
    requestStream,
    responseStream,
    requestSerialize: pass,
    requestDeserialize: pass,
    responseSerialize: pass,
    responseDeserialize: pass,
  });
  const service = {
    Unary: method('Unary', false, false),
    Fail: method('Fail', false, false),
    Watch: method('Watch', false, true),
    Chat: method('Chat', true, true),
    Secret: method('Secret', false, false),
  };
  type Client = grpc.Client & Record<string, (...a: unknown[]) => unknown>;
  let server: grpc.Server;
  let px: ProxyHarness;
  let client: Client;

  before(async () => {
    server = new grpc.Server();
    server.addService(service as unknown as grpc.ServiceDefinition, {
      Unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        const md = new grpc.Metadata();
        md.set('x-trailer', 'unary-done');
        cb(null, Buffer.concat([Buffer.from('echo:'), call.request]), md);
      },
      Fail: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) =>
        cb({ code: grpc.status.NOT_FOUND, details: 'no such thing' }),
      Watch: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        const n = Number(call.request.toString());
        for (let i = 0; i < n; i++) call.write(Buffer.from(`event-${i}`));
        call.end();
      },
      Chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        call.on('data', (m: Buffer) => call.write(Buffer.from(`re:${m.toString()}`)));
        call.on('end', () => call.end());
      },
      Secret: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from('leaked')),
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    px = await startProxy({
      upstream: { host: '127.0.0.1', port },
      policy: portPolicy([{ method: 'POST', path: '/weir\\.test\\.Echo/(Unary|Fail|Watch|Chat)' }]),
    });
    const Ctor = grpc.makeGenericClientConstructor(service as unknown as grpc.ServiceDefinition, 'Echo');
    client = new Ctor(`127.0.0.1:${px.port}`, grpc.credentials.createInsecure()) as unknown as Client;
  });
  after(async () => {
    client.close();
    await px.close();
    server.forceShutdown();
  });

  function unary(
    name: string,
    msg: string,
  ): Promise<{ err?: grpc.ServiceError; reply?: string; trailer?: string }> {
    return new Promise((resolve) => {
      let trailer: string | undefined;
      const call = client[name]!(Buffer.from(msg), (err: grpc.ServiceError | null, reply?: Buffer) =>
        setImmediate(() => resolve({ err: err ?? undefined, reply: reply?.toString(), trailer })),
      ) as grpc.ClientUnaryCall;
      call.on('status', (s: grpc.StatusObject) => (trailer = s.metadata.get('x-trailer')[0]?.toString()));
    });
  }

  it('unary: message and trailing metadata', async () => {
    const r = await unary('Unary', 'hi');
    assert.equal(r.err, undefined);
    assert.equal(r.reply, 'echo:hi');
    assert.equal(r.trailer, 'unary-done');
  });

  it('unary error: grpc-status and message arrive (trailers-only answer)', async () => {
    const r = await unary('Fail', 'x');
    assert.equal(r.err?.code, grpc.status.NOT_FOUND);
    assert.equal(r.err?.details, 'no such thing');
  });

  it('a method the policy does not allow is refused: PERMISSION_DENIED, the server never sees it', async () => {
    const r = await unary('Secret', 'x');
    assert.equal(r.err?.code, grpc.status.PERMISSION_DENIED);
    assert.equal(r.reply, undefined);
    const rec = px.records.find((x) => x.type === 'REQUEST' && x.http?.url.endsWith('/Secret'));
    assert.equal(rec?.verdict, 'DENIED');
  });

  it('server streaming: every message, then the status', async () => {
    const got: string[] = [];
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      const call = client.Watch!(Buffer.from('25')) as grpc.ClientReadableStream<Buffer>;
      call.on('data', (m: Buffer) => got.push(m.toString()));
      call.on('status', resolve);
      call.on('error', () => {});
    });
    assert.equal(status.code, grpc.status.OK);
    assert.deepEqual(
      got,
      Array.from({ length: 25 }, (_, i) => `event-${i}`),
    );
  });

  it('bidirectional streaming: replies interleave with requests', async () => {
    const call = client.Chat!() as grpc.ClientDuplexStream<Buffer, Buffer>;
    const got: string[] = [];
    call.on('data', (m: Buffer) => got.push(m.toString()));
    const done = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    call.on('error', () => {});
    for (let i = 0; i < 5; i++) {
      call.write(Buffer.from(`m${i}`));
      await eventually(() => got.length === i + 1, 3000, `reply ${i}`);
    }
    call.end();
    assert.equal((await done).code, grpc.status.OK);
    assert.deepEqual(got, ['re:m0', 're:m1', 're:m2', 're:m3', 're:m4']);
  });
});

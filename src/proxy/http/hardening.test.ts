// The HTTP engine under hostile or failing peers, with real sockets on loopback: request smuggling,
// oversized headers and URIs, slow clients, HTTP/2 stream floods and malformed frames, failing
// upstreams, clients that vanish, and bounded memory. In every case the client gets a clean answer
// (or a clean close), nothing ambiguous reaches the upstream, and the handler keeps serving.
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Worker } from 'node:worker_threads';
import {
  eventually,
  portPolicy,
  rawExchange,
  request,
  startProxy,
  startUpstream,
  type ProxyHarness,
  type TestUpstream,
} from '../../../test/support/http-proxy.js';

let up: TestUpstream;
const harnesses: ProxyHarness[] = [];

before(async () => {
  up = await startUpstream();
});
after(async () => {
  for (const h of harnesses) await h.close();
  await up.close();
});
beforeEach(() => {
  up.seen.length = 0;
});

async function proxy(limits: Parameters<typeof startProxy>[0]['limits'] = {}, upstreamPort = up.port) {
  const h = await startProxy({
    upstream: { host: '127.0.0.1', port: upstreamPort },
    policy: portPolicy([{}]),
    limits,
  });
  harnesses.push(h);
  return h;
}

/** The proxy still serves a normal request. */
async function stillServes(px: ProxyHarness): Promise<void> {
  const r = await request(px.port, { path: '/alive' });
  assert.equal(r.status, 200);
}

const statusOf = (received: string) => received.match(/^HTTP\/1\.1 (\d{3})/)?.[1];

describe('request smuggling and ambiguous framing (HTTP/1.1)', () => {
  const smuggle = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';
  const cases: [string, string][] = [
    [
      'Content-Length with Transfer-Encoding',
      `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggle}`,
    ],
    [
      'Transfer-Encoding with Content-Length',
      `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\n${smuggle}`,
    ],
    [
      'conflicting Content-Length',
      `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\n${smuggle}`,
    ],
    [
      'duplicate Content-Length',
      `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc${smuggle}`,
    ],
    ['Content-Length list', `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc${smuggle}`],
    ['obs-fold', `GET /a HTTP/1.1\r\nHost: x\r\nX-Foo: a\r\n b\r\n\r\n${smuggle}`],
    [
      'obs-fold in Transfer-Encoding',
      `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n chunked\r\n\r\n0\r\n\r\n${smuggle}`,
    ],
    [
      'unknown transfer coding',
      `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${smuggle}`,
    ],
    [
      'chunked not last',
      `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${smuggle}`,
    ],
    ['space before colon', `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello${smuggle}`],
    ['bare LF line ends', `GET /a HTTP/1.1\nHost: x\n\n${smuggle}`],
    [
      'bad chunk size',
      `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n${smuggle}`,
    ],
    ['two Host fields', `GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n${smuggle}`],
    [
      'Transfer-Encoding in HTTP/1.0',
      `POST /a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggle}`,
    ],
    ['NUL in a field value', `GET /a HTTP/1.1\r\nHost: x\r\nX: a\u0000b\r\n\r\n${smuggle}`],
  ];
  for (const [name, data] of cases) {
    const code = name === 'unknown transfer coding' ? '501' : '400';
    it(`${name}: ${code}, connection closed, nothing upstream`, async () => {
      const px = await proxy();
      const { received, closed } = await rawExchange(px.port, data);
      assert.equal(statusOf(received), code, received);
      assert.ok(closed, 'the connection is closed');
      assert.equal(received.match(/HTTP\/1\.1/g)?.length, 1, 'exactly one answer');
      if (name === 'bad chunk size') {
        // The headers were fine: the upstream may have got the start of the request, never all of it.
        assert.ok(up.seen.every((s) => !s.complete && s.url === '/a'));
        await eventually(() => up.open.size === 0, 2000, 'the upstream request to be aborted');
      } else {
        assert.deepEqual(up.seen, []);
      }
      await stillServes(px);
    });
  }

  it('a bad request after a good one on the same connection: the good one is answered, nothing else passes', async () => {
    const px = await proxy();
    const good = 'GET /first HTTP/1.1\r\nHost: x\r\n\r\n';
    const bad = `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggle}`;
    const { received, closed } = await rawExchange(px.port, good + bad);
    assert.deepEqual(
      [...received.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]),
      ['200', '400'],
    );
    assert.ok(closed);
    assert.deepEqual(
      up.seen.map((s) => s.url),
      ['/first'],
    );
  });
});

describe('sizes and slow clients', () => {
  const limits = {
    maxHeaderBytes: 8192,
    maxUriBytes: 2048,
    maxHeaderCount: 50,
    headersTimeoutMs: 400,
    requestTimeoutMs: 1500,
  };

  it('oversized header fields: 431 and close', async () => {
    const px = await proxy(limits);
    const { received, closed } = await rawExchange(
      px.port,
      `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(10_000)}\r\n\r\n`,
    );
    assert.equal(statusOf(received), '431');
    assert.ok(closed);
    const many = Array.from({ length: 60 }, (_, i) => `X-${i}: v\r\n`).join('');
    const r2 = await rawExchange(px.port, `GET / HTTP/1.1\r\nHost: x\r\n${many}\r\n`);
    assert.equal(statusOf(r2.received), '431');
    assert.ok(r2.closed);
    assert.deepEqual(up.seen, []);
    await stillServes(px);
  });

  it('oversized URI: 414 and close (431 beyond the header limit)', async () => {
    const px = await proxy(limits);
    const { received, closed } = await rawExchange(
      px.port,
      `GET /${'u'.repeat(4000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    assert.equal(statusOf(received), '414');
    assert.ok(closed);
    const huge = await rawExchange(px.port, `GET /${'u'.repeat(9000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.equal(statusOf(huge.received), '431');
    assert.deepEqual(up.seen, []);
    const rec = px.records.find((r) => r.http?.code === 414);
    assert.deepEqual([rec?.verdict, rec?.detail], ['ERROR', 'uri_too_long']);
  });

  it('slowloris: headers trickled past the header timeout get 408 and a close', async () => {
    const px = await proxy(limits);
    const s = net.connect(px.port, '127.0.0.1');
    let received = '';
    let closed = false;
    s.on('data', (d) => (received += d));
    s.on('close', () => (closed = true));
    s.on('error', () => {});
    const t0 = Date.now();
    s.write('GET / HTTP/1.1\r\nHost: x\r\n');
    const drip = setInterval(() => s.writable && s.write('X-Slow: 1\r\n'), 100);
    await eventually(() => closed, 5000, 'the connection to be closed');
    clearInterval(drip);
    assert.equal(statusOf(received), '408');
    assert.ok(Date.now() - t0 < 3000);
    await stillServes(px);
  });

  it('an idle keep-alive connection is not a slow client: no 408 before the idle timeout', async () => {
    const px = await proxy({ ...limits, idleTimeoutMs: 3000 });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const a = await request(px.port, { path: '/first', agent });
    await new Promise((r) => setTimeout(r, 1000));
    const b = await request(px.port, { path: '/second', agent });
    agent.destroy();
    assert.deepEqual([a.status, b.status], [200, 200]);
    assert.equal(px.handler.stats().connectionsTotal, 1, 'the same connection');
  });

  it('a client that sends nothing (or half a preface) is closed after the header timeout', async () => {
    const px = await proxy(limits);
    for (const first of ['', 'PRI * HT']) {
      const t0 = Date.now();
      const { closed } = await rawExchange(px.port, first, { timeoutMs: 3000 });
      assert.ok(closed, `closed after ${JSON.stringify(first)}`);
      assert.ok(Date.now() - t0 < 2500);
    }
    await eventually(
      () => px.handler.stats().connectionsActive === 0,
      2000,
      'the connections to be released',
    );
  });

  it('a client that connects and closes without a byte is released at once, not at the header timeout', async () => {
    const px = await proxy({ ...limits, headersTimeoutMs: 60_000, requestTimeoutMs: 60_000 });
    const before = px.handler.stats().connectionsTotal;
    for (let i = 0; i < 5; i++) {
      const s = net.connect(px.port, '127.0.0.1');
      s.on('error', () => {});
      await new Promise<void>((resolve) => s.once('connect', () => resolve()));
      s.end();
    }
    await eventually(() => px.handler.stats().connectionsTotal - before === 5, 2000, 'five accepted');
    await eventually(
      () => px.handler.stats().connectionsActive === 0,
      2000,
      'the connect-and-close clients to be released',
    );
  });

  it('a body trickled past the request timeout: 408, the upstream request is aborted', async () => {
    const px = await proxy(limits);
    const s = net.connect(px.port, '127.0.0.1');
    let received = '';
    let closed = false;
    s.on('data', (d) => (received += d));
    s.on('close', () => (closed = true));
    s.on('error', () => {});
    s.write('POST /hang HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n');
    const drip = setInterval(() => s.writable && s.write('b'), 100);
    await eventually(() => closed, 6000, 'the connection to be closed');
    clearInterval(drip);
    assert.equal(statusOf(received), '408');
    await eventually(() => up.open.size === 0, 3000, 'the upstream request to be aborted');
    assert.equal(up.seen[0]?.complete, false);
    await eventually(() => px.handler.stats().requestsActive === 0, 3000, 'no request in flight');
  });
});

describe('HTTP/2 limits and malformed frames', () => {
  let h2up: http2.Http2Server;
  let px: ProxyHarness;
  let upstreamStreams = 0;
  let maxUpstreamStreams = 0;

  before(async () => {
    h2up = http2.createServer();
    h2up.on('stream', (stream, headers) => {
      upstreamStreams++;
      maxUpstreamStreams = Math.max(maxUpstreamStreams, upstreamStreams);
      stream.on('close', () => upstreamStreams--);
      stream.on('error', () => {});
      const delay = headers[':path'] === '/slow' ? 150 : 0;
      setTimeout(() => {
        if (stream.closed) return;
        stream.respond({ ':status': 200 });
        stream.end('ok');
      }, delay);
    });
    await new Promise<void>((r) => h2up.listen(0, '127.0.0.1', r));
    px = await startProxy({
      upstream: { host: '127.0.0.1', port: (h2up.address() as net.AddressInfo).port },
      policy: portPolicy([{}]),
      limits: { maxConcurrentStreams: 5, idleTimeoutMs: 1000, maxHeaderBytes: 8192, maxUriBytes: 2048 },
    });
  });
  after(async () => {
    await px.close();
    h2up.close();
  });

  const frame = (type: number, flags: number, stream: number, payload: Buffer) => {
    const b = Buffer.alloc(9 + payload.length);
    b.writeUIntBE(payload.length, 0, 3);
    b[3] = type;
    b[4] = flags;
    b.writeUInt32BE(stream, 5);
    payload.copy(b, 9);
    return b;
  };
  const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
  const SETTINGS = frame(4, 0, 0, Buffer.alloc(0));
  const SETTINGS_ACK = frame(4, 1, 0, Buffer.alloc(0));
  // HPACK: :method GET, :scheme http (static table), :path and :authority as literals.
  const headersBlock = (path: string) =>
    Buffer.concat([
      Buffer.from([0x82, 0x86, 0x44, path.length]),
      Buffer.from(path),
      Buffer.from([0x41, 3]),
      Buffer.from('svc'),
    ]);
  interface Frame {
    type: number;
    stream: number;
    code?: number;
  }
  const parse = (buf: Buffer): Frame[] => {
    const out: Frame[] = [];
    for (let o = 0; o + 9 <= buf.length;) {
      const len = buf.readUIntBE(o, 3);
      if (o + 9 + len > buf.length) break;
      const type = buf[o + 3]!;
      const p = buf.subarray(o + 9, o + 9 + len);
      out.push({
        type,
        stream: buf.readUInt32BE(o + 5) & 0x7fffffff,
        code: type === 3 ? p.readUInt32BE(0) : type === 7 ? p.readUInt32BE(4) : undefined,
      });
      o += 9 + len;
    }
    return out;
  };
  async function rawH2(frames: Buffer[], waitMs = 600): Promise<{ frames: Frame[]; closed: boolean }> {
    const s = net.connect(px.port, '127.0.0.1');
    let got = Buffer.alloc(0);
    let closed = false;
    s.on('data', (d) => (got = Buffer.concat([got, d])));
    s.on('close', () => (closed = true));
    s.on('error', () => {});
    s.write(Buffer.concat([PREFACE, ...frames]));
    await new Promise((r) => setTimeout(r, waitMs));
    s.destroy();
    return { frames: parse(got), closed };
  }
  async function h2get(session: http2.ClientHttp2Session, path: string): Promise<number> {
    return new Promise((resolve) => {
      const r = session.request({ ':path': path });
      let status = 0;
      r.on('response', (h) => (status = Number(h[':status'])));
      r.on('close', () => resolve(status));
      r.on('error', () => {});
      r.resume();
    });
  }

  it('a client that respects the stream limit gets every stream served, at most the limit at once', async () => {
    maxUpstreamStreams = 0;
    const session = http2.connect(`http://127.0.0.1:${px.port}`);
    // A client that knows the limit (node's client queues streams beyond it).
    await new Promise((r) => session.once('remoteSettings', r));
    const statuses = await Promise.all(Array.from({ length: 20 }, () => h2get(session, '/slow')));
    session.close();
    assert.deepEqual(statuses, Array(20).fill(200));
    assert.ok(maxUpstreamStreams <= 5, `${maxUpstreamStreams} upstream streams at once`);
  });

  it('a client that opens more streams than allowed is refused (RST/GOAWAY), nothing beyond the limit is forwarded', async () => {
    maxUpstreamStreams = 0;
    const streams = Array.from({ length: 12 }, (_, i) => frame(1, 0x4, 1 + 2 * i, headersBlock('/slow')));
    const { frames } = await rawH2([SETTINGS, SETTINGS_ACK, ...streams]);
    const refusedOrGoaway = frames.filter((f) => f.type === 3 || f.type === 7);
    assert.ok(refusedOrGoaway.length > 0, 'streams refused or the session ended');
    assert.ok(maxUpstreamStreams <= 5);
    const session = http2.connect(`http://127.0.0.1:${px.port}`);
    assert.equal(await h2get(session, '/after'), 200);
    session.close();
  });

  const malformed: [string, Buffer[], number][] = [
    ['DATA on stream 0', [SETTINGS, frame(0, 0, 0, Buffer.from('xx'))], 1],
    ['SETTINGS with a bad length', [frame(4, 0, 0, Buffer.from([1, 2, 3]))], 6],
    ['undecodable header block', [SETTINGS, frame(1, 0x5, 1, Buffer.from([0xff, 0xff, 0xff, 0xff]))], 9],
    ['even (server) stream id', [SETTINGS, frame(1, 0x5, 2, headersBlock('/'))], 1],
    [
      'window overflow',
      [
        SETTINGS,
        frame(8, 0, 0, Buffer.from([0x7f, 0xff, 0xff, 0xff])),
        frame(8, 0, 0, Buffer.from([0x7f, 0xff, 0xff, 0xff])),
      ],
      3,
    ],
  ];
  for (const [name, frames, code] of malformed) {
    it(`malformed: ${name} → GOAWAY, the proxy stays up and the connection is closed by the idle timeout`, async () => {
      const before = px.handler.stats().connectionsActive;
      const s = net.connect(px.port, '127.0.0.1');
      let got = Buffer.alloc(0);
      let closed = false;
      s.on('data', (d) => (got = Buffer.concat([got, d])));
      s.on('close', () => (closed = true));
      s.on('error', () => {});
      s.write(Buffer.concat([PREFACE, ...frames]));
      await eventually(() => parse(got).some((f) => f.type === 7), 2000, 'a GOAWAY');
      const goaway = parse(got).find((f) => f.type === 7)!;
      // nghttp2 picks the code (PROTOCOL_ERROR, FRAME_SIZE_ERROR, COMPRESSION_ERROR, FLOW_CONTROL_ERROR).
      assert.ok(
        [1, 2, 3, 6, 9].includes(goaway.code!),
        `GOAWAY code ${goaway.code} (expected about ${code})`,
      );
      await eventually(() => closed, 4000, 'the connection to be closed');
      await eventually(
        () => px.handler.stats().connectionsActive <= before,
        2000,
        'the connection to be released',
      );
      const session = http2.connect(`http://127.0.0.1:${px.port}`);
      assert.equal(await h2get(session, '/after'), 200);
      session.close();
    });
  }

  it('a stream without :path is refused alone; the session goes on', async () => {
    const noPath = frame(1, 0x5, 1, Buffer.from([0x82, 0x86, 0x41, 3, 0x73, 0x76, 0x63]));
    const ok = frame(1, 0x5, 3, headersBlock('/fine'));
    const { frames } = await rawH2([SETTINGS, SETTINGS_ACK, noPath, ok]);
    assert.ok(frames.some((f) => f.type === 3 && f.stream === 1));
    assert.ok(
      frames.some((f) => f.type === 1 && f.stream === 3),
      'stream 3 answered',
    );
  });

  it('a Host field that contradicts :authority: 400', async () => {
    const session = http2.connect(`http://127.0.0.1:${px.port}`);
    const status = await new Promise<number>((resolve) => {
      const r = session.request({ ':path': '/x', ':authority': 'a.example', host: 'b.example' });
      let s = 0;
      r.on('response', (h) => (s = Number(h[':status'])));
      r.on('close', () => resolve(s));
      r.on('error', () => {});
      r.resume();
    });
    session.close();
    assert.equal(status, 400);
  });
});

describe('failing upstreams', () => {
  it('an upstream that resets the connection: 502, the client connection stays usable', async () => {
    const px = await proxy();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const r = await request(px.port, { path: '/reset', agent });
    const ok = await request(px.port, { path: '/next', agent });
    agent.destroy();
    assert.equal(r.status, 502);
    assert.match(r.body.toString(), /^upstream connect error or disconnect\/reset before headers/);
    assert.equal(ok.status, 200);
    const rec = px.records.find((x) => x.type === 'RESPONSE' && x.http?.code === 502);
    assert.deepEqual([rec?.verdict, rec?.detail], ['ERROR', 'upstream_reset']);
  });

  it('a refused upstream connect: 502', async () => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const px = await proxy({}, port);
    const r = await request(px.port, { path: '/x' });
    assert.equal(r.status, 502);
    await stillServes(await proxy());
  });

  it('an upstream connect that never completes: 504 after the connect timeout', async () => {
    // A listener whose thread never accepts: once its backlog is full, SYNs go unanswered.
    const w = new Worker(
      `const net = require('node:net'); const { parentPort } = require('node:worker_threads');
       const s = net.createServer(); s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
         parentPort.postMessage(s.address().port);
         setImmediate(() => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0));
       });`,
      { eval: true },
    );
    try {
      const port = await new Promise<number>((r) => w.once('message', r));
      const fillers: net.Socket[] = [];
      for (let i = 0; i < 4; i++) fillers.push(net.connect(port, '127.0.0.1').on('error', () => {}));
      await new Promise((r) => setTimeout(r, 200));
      const px = await proxy({ upstreamConnectTimeoutMs: 300 }, port);
      const t0 = Date.now();
      const r = await request(px.port, { path: '/x' });
      assert.equal(r.status, 504);
      assert.equal(r.body.toString(), 'upstream request timeout\r\n');
      assert.ok(Date.now() - t0 < 3000);
      for (const f of fillers) f.destroy();
    } finally {
      await w.terminate();
    }
  });

  it('an upstream that does not answer in time: 504, the upstream request is abandoned', async () => {
    const px = await proxy({ upstreamHeadersTimeoutMs: 300 });
    const r = await request(px.port, { path: '/hang' });
    assert.equal(r.status, 504);
    await eventually(() => up.open.size === 0, 3000, 'the upstream request to be closed');
  });

  it('an upstream that dies in the middle of the body: the client sees a cut response, not a complete one', async () => {
    const px = await proxy();
    const outcome = await new Promise<string>((resolve) => {
      const req = http.get({ host: '127.0.0.1', port: px.port, path: '/cut' }, (res) => {
        res.on('data', () => {});
        res.on('end', () => resolve('complete'));
        res.on('error', () => resolve('cut'));
        res.on('aborted', () => resolve('cut'));
      });
      req.on('error', () => resolve('cut'));
    });
    assert.equal(outcome, 'cut');
    await stillServes(px);
  });
});

describe('clients that vanish', () => {
  it('mid-upload: the upstream request is aborted and nothing stays in flight', async () => {
    const px = await proxy();
    const s = net.connect(px.port, '127.0.0.1');
    s.on('error', () => {});
    s.write('POST /hang HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n');
    s.write(Buffer.alloc(1_000_000, 1));
    await eventually(
      () => (up.seen[0]?.bodyBytes ?? 0) > 0,
      3000,
      'the upstream to receive part of the body',
    );
    s.destroy();
    await eventually(() => up.open.size === 0, 3000, 'the upstream request to be aborted');
    assert.equal(up.seen[0]?.complete, false);
    await eventually(() => px.handler.stats().requestsActive === 0, 3000, 'no request in flight');
    assert.equal(px.handler.stats().cancelled, 1);
  });

  it('while waiting for the response: the upstream request is aborted', async () => {
    const px = await proxy();
    const s = net.connect(px.port, '127.0.0.1');
    s.on('error', () => {});
    s.write('GET /hang HTTP/1.1\r\nHost: x\r\n\r\n');
    await eventually(() => up.open.size === 1, 3000, 'the upstream request');
    s.destroy();
    await eventually(() => up.open.size === 0, 3000, 'the upstream request to be aborted');
    await eventually(
      () => px.handler.stats().connectionsActive === 0,
      3000,
      'the client connection to be released',
    );
  });
});

describe('bounded resources', () => {
  it('many connections and bodies: every gauge returns to zero and the heap does not keep growing', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const px = await proxy({ idleTimeoutMs: 500 });
    px.policy = portPolicy([{ method: 'POST' }, { method: 'GET', path: '/big.*' }]);
    const body = Buffer.alloc(64 * 1024, 3);
    const round = async () => {
      const work: Promise<unknown>[] = [];
      for (let i = 0; i < 100; i++) {
        const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
        work.push(
          (async () => {
            await request(px.port, { method: 'POST', path: '/upload', body, agent });
            await request(px.port, { path: `/big?n=${128 * 1024}`, agent });
            await request(px.port, { path: '/denied', agent });
            agent.destroy();
          })(),
        );
      }
      await Promise.all(work);
      await eventually(() => px.handler.stats().connectionsActive === 0, 5000, 'connections to close');
      px.records.length = 0;
      px.access.length = 0;
      up.seen.length = 0;
      gc();
      return process.memoryUsage().heapUsed;
    };
    await round();
    const h1 = await round();
    const h2 = await round();
    const h3 = await round();
    const s = px.handler.stats();
    assert.deepEqual(
      [
        s.connectionsActive,
        s.http1ConnectionsActive,
        s.requestsActive,
        s.tunnelsActive,
        s.upstream.h2Streams,
      ],
      [0, 0, 0, 0, 0],
    );
    assert.equal(s.denied, 400);
    const growth = h3 - h1;
    assert.ok(
      growth < 16 * 1024 * 1024,
      `heap grew ${(growth / 1048576).toFixed(1)} MiB over two rounds (${h1}, ${h2}, ${h3})`,
    );
  });
});

// Write batching (write-batch.ts) with real sockets on loopback: bytes corked in a turn reach the
// peer at the end of the turn, and no way of closing a socket loses what it holds corked.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  eventually,
  portPolicy,
  rawExchange,
  startProxy,
  type ProxyHarness,
} from '../../../test/support/http-proxy.js';
import { batchedWrite } from './write-batch.js';

/** A server whose every accepted socket goes to `onSocket`; a client's bytes until it closes. */
async function exchange(onSocket: (s: net.Socket) => void): Promise<{ received: string; error?: string }> {
  const server = net.createServer({ allowHalfOpen: true }, onSocket);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  try {
    return await new Promise((resolve) => {
      const c = net.connect({ port, host: '127.0.0.1' });
      let received = '';
      let error: string | undefined;
      c.on('data', (d: Buffer) => (received += d.toString('latin1')));
      c.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
      c.on('close', () => resolve(error === undefined ? { received } : { received, error }));
      setTimeout(() => c.destroy(), 3000).unref();
    });
  } finally {
    server.close();
  }
}

describe('write batching', () => {
  it('sends what a turn wrote at the end of the turn, in order, with no other I/O', async () => {
    const got = await exchange((s) => {
      batchedWrite(s, 'HTTP/1.1 200 OK\r\n');
      batchedWrite(s, Buffer.from('content-length: 2\r\n\r\n'));
      assert.ok(s.writableCorked > 0, 'held until the turn ends');
      batchedWrite(s, 'ok');
      setImmediate(() => {
        assert.equal(s.writableCorked, 0, 'uncorked once the turn ends');
        setTimeout(() => s.end(), 50);
      });
    });
    assert.equal(got.received, 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
  });

  // The close paths that lost the answer: a socket destroyed (by whatever code: the engine, the
  // handler, node itself) in the turn that wrote the answer, before the end-of-turn flush.
  it('a destroy in the same turn sends the corked answer first', async () => {
    const got = await exchange((s) => {
      batchedWrite(s, 'HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n');
      s.destroy();
    });
    assert.equal(got.received, 'HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n');
  });

  it('a destroy from an event of the same turn (after the flush was scheduled) sends it too', async () => {
    const got = await exchange((s) => {
      batchedWrite(s, 'answer');
      // Another callback of the turn closes it, as a failed upstream's handler would.
      process.nextTick(() => s.destroy());
    });
    assert.equal(got.received, 'answer');
  });

  it('end() and destroySoon() after corked writes send everything', async () => {
    const got = await exchange((s) => {
      batchedWrite(s, 'one ');
      s.end('two', 'latin1');
      s.destroySoon();
    });
    assert.equal(got.received, 'one two');
  });
});

describe('an upstream that closes at once: every request gets its 5xx, the proxy lives on', () => {
  // The proxy's upstream through the mTLS tunnel is a local socket to the tunnel's thread, which
  // closes it when the tunnel cannot be opened (cluster-mtls-l7's fail-closed case). Here: a
  // "tunnel" that closes each connection in one of several ways and moments. Before llhttp.ts
  // freed a consumed parser after the turn, the upstream's EOF or error closed it from inside its
  // own native read and this process died of a segfault within a few hundred requests (curl's
  // `000` in the lab); the 5xx answers also go through write batching (corked, then flushed).
  let tunnel: net.Server;
  let px: ProxyHarness;
  let mode = 0;
  const MODES = 6;
  before(async () => {
    tunnel = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      // Every other one ends at once (the tunnel's refusal; the crash's likeliest moment).
      const n = mode++;
      const m = n % 2 === 0 ? 0 : 1 + ((n >> 1) % (MODES - 1));
      if (m === 0) s.end();
      else if (m === 1) s.destroy();
      else if (m === 2) s.once('data', () => s.destroy());
      else if (m === 3) s.once('data', () => s.end());
      else if (m === 4) s.once('data', () => setImmediate(() => s.end()));
      else s.once('data', () => s.resetAndDestroy());
    });
    await new Promise<void>((r) => tunnel.listen(0, '127.0.0.1', r));
    const port = (tunnel.address() as net.AddressInfo).port;
    px = await startProxy({
      upstream: { host: '127.0.0.1', port: 1 },
      policy: portPolicy([{ method: 'GET', path: '/.*' }]),
      connector: () => {
        const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
        s.write('127.0.0.1 40000 127.0.0.1 1\n');
        return s;
      },
    });
  });
  after(async () => {
    await px.close();
    tunnel.close();
  });

  it('answers 600 requests 5xx, four at a time, keep-alive and close', async () => {
    const one = async (i: number) => {
      const close = i % 3 === 0 ? 'connection: close\r\n' : '';
      const { received } = await rawExchange(px.port, `GET /x${i} HTTP/1.1\r\nhost: s\r\n${close}\r\n`, {
        until: (r) => r.includes('\r\n\r\n'),
      });
      assert.match(received, /^HTTP\/1\.1 50\d /, `request ${i} got its answer: ${received}`);
    };
    for (let i = 0; i < 600; i += 4) await Promise.all([one(i), one(i + 1), one(i + 2), one(i + 3)]);
    await eventually(() => px.access.length >= 600, 3000, 'access entries');
    assert.equal(px.handler.stats().upstreamErrors, 600);
  });
});

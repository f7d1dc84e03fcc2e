// Transparent sockets from libc (koffi) handed to Node, in a throw-away weir-ptest-* namespace:
// a listener Node serves through listen({ fd }), and upstream sockets bound to an address of no
// interface whose writes wait until connect() completes and whose refusal is an 'error'.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, Socket, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { withNetns } from '../bpf/index.js';
import { run } from '../shared/exec.js';
import { boundPort, closeFd, listener, upstream, UPSTREAM_PORTS } from './transparent.js';

const PORT = 18080;

describe('transparent sockets', () => {
  const netns = `weir-ptest-${randomBytes(3).toString('hex')}`;
  let server: Server;
  const peers: string[] = [];

  before(async () => {
    await run(['ip', 'netns', 'add', netns]);
    await run(['ip', '-n', netns, 'link', 'set', 'lo', 'up']);
    const fd = withNetns(netns, () => listener({ family: 4, port: PORT }));
    server = createServer((s) => {
      peers.push(`${s.remoteAddress}:${s.remotePort}`);
      s.on('data', (d) => s.write(d));
      s.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server.listen({ fd }, resolve));
  });
  after(async () => {
    server?.close();
    await run(['ip', 'netns', 'del', netns], { check: false });
  });

  it('an upstream socket: writes before the connection exists wait for it, the peer sees its source', async () => {
    const fd = withNetns(netns, () => upstream({ src: '127.0.0.5', mark: 0xb00 }));
    const port = boundPort(fd);
    const s = new Socket({ fd, allowHalfOpen: true });
    s.connect({ host: '127.0.0.1', port: PORT });
    s.write('queued before connect\n');
    const echo = await new Promise<string>((resolve, reject) => {
      s.once('data', (d) => resolve(String(d)));
      s.once('error', reject);
    });
    assert.equal(echo, 'queued before connect\n');
    assert.equal(s.localAddress, '127.0.0.5');
    assert.deepEqual(peers, [`127.0.0.5:${port}`]);
    s.destroy();
  });

  it('a refused connection is an error event (ECONNREFUSED), also for what was written', async () => {
    const fd = withNetns(netns, () => upstream({ src: '127.0.0.5', mark: 0xb00 }));
    const s = new Socket({ fd });
    s.connect({ host: '127.0.0.1', port: PORT + 1 });
    s.write('never sent');
    const err = await new Promise<NodeJS.ErrnoException>((resolve) => s.once('error', resolve));
    assert.equal(err.code, 'ECONNREFUSED');
  });

  it('binds an address no interface has (IP_TRANSPARENT), below the ephemeral range, avoiding what it is told to', () => {
    const ports: number[] = [];
    for (let i = 0; i < 20; i++) {
      const fd = withNetns(netns, () =>
        upstream({ src: '192.0.2.1', mark: 0xa00, avoid: (p) => p % 4 === 0 }),
      );
      ports.push(boundPort(fd));
      closeFd(fd);
    }
    for (const p of ports) {
      assert.ok(p >= UPSTREAM_PORTS.min && p <= UPSTREAM_PORTS.max, `port ${p} is in the upstream range`);
      assert.notEqual(p % 4, 0, `port ${p} was to be avoided`);
    }
  });
});

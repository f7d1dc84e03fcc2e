// Upgrades through the HTTP engine with real sockets: a WebSocket (ws client and server) after an
// allowed upgrade request becomes a tunnel; a denied one is answered 403; an upgrade the upstream
// declines ends the connection (nothing after it passes unjudged); h2c is never upgraded to.
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import {
  eventually,
  portPolicy,
  rawExchange,
  startProxy,
  type ProxyHarness,
} from '../../../test/support/http-proxy.js';

let server: http.Server;
let wss: WebSocketServer;
let px: ProxyHarness;
const upgrades: string[] = [];
const plain: string[] = [];

before(async () => {
  server = http.createServer((req, res) => {
    plain.push(`${req.method} ${req.url} upgrade=${req.headers.upgrade ?? '-'}`);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('plain answer');
  });
  wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    upgrades.push(req.url!);
    if (req.url === '/ws/decline') {
      socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 8\r\nconnection: close\r\n\r\ndeclined');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (m, binary) => ws.send(binary ? m : `echo:${m.toString()}`, { binary }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  px = await startProxy({
    upstream: { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port },
  });
});
after(async () => {
  await px.close();
  wss.close();
  server.closeAllConnections();
  server.close();
});
beforeEach(() => {
  upgrades.length = 0;
  plain.length = 0;
  px.records.length = 0;
  px.policy = portPolicy([{ method: 'GET', path: '/ws/.*' }]);
});

function open(path: string): Promise<{ ws?: WebSocket; status?: number; body?: string }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${px.port}${path}`);
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    ws.once('error', () => resolve({}));
  });
}

describe('upgrades', () => {
  it('tunnels a WebSocket after an allowed upgrade request: text and binary, both ways', async () => {
    const { ws } = await open('/ws/chat');
    assert.ok(ws, 'the WebSocket opened');
    const got: string[] = [];
    ws.on('message', (m, binary) => got.push(binary ? `bin:${(m as Buffer).length}` : m.toString()));
    ws.send('hello');
    ws.send(Buffer.alloc(200_000, 1), { binary: true });
    ws.send('bye');
    await eventually(() => got.length === 3, 5000, 'three echoes');
    assert.deepEqual(got, ['echo:hello', 'bin:200000', 'echo:bye']);
    assert.equal(px.handler.stats().tunnelsActive, 1);
    ws.close();
    await eventually(() => px.handler.stats().tunnelsActive === 0, 3000, 'the tunnel to close');
    assert.deepEqual(upgrades, ['/ws/chat']);
    const res = px.records.find((r) => r.type === 'RESPONSE');
    assert.deepEqual([res?.verdict, res?.http?.code, res?.detail], ['FORWARDED', 101, 'upgraded']);
  });

  it('answers a denied upgrade 403 and never reaches the upstream', async () => {
    const r = await open('/private/ws');
    assert.equal(r.status, 403);
    assert.equal(r.body, 'Access denied\r\n');
    assert.deepEqual(upgrades, []);
    assert.deepEqual(
      px.records.map((x) => `${x.type} ${x.verdict}`),
      ['REQUEST DENIED', 'RESPONSE DENIED'],
    );
  });

  it('relays a declined upgrade and closes the connection: later bytes are never passed on', async () => {
    const { received, closed } = await rawExchange(
      px.port,
      'GET /ws/decline HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n' +
        'DELETE /private HTTP/1.1\r\nHost: svc\r\n\r\n',
    );
    assert.match(received, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.match(received, /declined$/);
    assert.ok(closed);
    assert.deepEqual(plain, []);
  });

  it('serves an h2c upgrade request as plain HTTP/1.1 (never upgraded); the connection goes on', async () => {
    const { received } = await rawExchange(
      px.port,
      'GET /ws/h2c HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n' +
        'GET /ws/next HTTP/1.1\r\nHost: svc\r\n\r\n',
      { until: (r) => (r.match(/plain answer/g) ?? []).length === 2 && r.endsWith('0\r\n\r\n') },
    );
    assert.deepEqual(
      [...received.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]),
      ['200', '200'],
    );
    assert.doesNotMatch(received, /101|[Uu]pgrade/);
    assert.deepEqual(upgrades, []);
    assert.deepEqual(plain, ['GET /ws/h2c upgrade=-', 'GET /ws/next upgrade=-']);
  });
});

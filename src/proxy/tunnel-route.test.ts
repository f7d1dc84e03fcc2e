// The hand-off header between a proxy thread and the main thread's tunnel, and which destinations
// the proxy's own upstreams tunnel (overlay_encrypt_port's test, bpf/lib/overlay.h).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { handoffHeader, parseHandoffHeader, tunnelledEntry } from './tunnel-route.js';

describe('tunnel hand-off header', () => {
  it('round-trips IPv4 and IPv6 addresses', () => {
    const v4 = { src: { ip: '10.244.0.3', port: 23456 }, dst: { ip: '10.244.1.2', port: 8080 } };
    assert.deepEqual(parseHandoffHeader(handoffHeader(v4.src, v4.dst).trimEnd()), v4);
    const v6 = { src: { ip: 'fd00:10:244::3', port: 20001 }, dst: { ip: 'fd00:10:244:1::2', port: 80 } };
    assert.deepEqual(parseHandoffHeader(handoffHeader(v6.src, v6.dst).trimEnd()), v6);
  });

  it('refuses what is not two addresses with ports', () => {
    for (const bad of [
      '',
      'GET / HTTP/1.1',
      '10.244.0.3 23456 10.244.1.2',
      '10.244.0.3 0 10.244.1.2 8080',
      '10.244.0.3 70000 10.244.1.2 8080',
      'example.com 1 10.244.1.2 8080',
      '10.244.0.3 1 10.244.1.2 8080 extra',
    ])
      assert.equal(parseHandoffHeader(bad), undefined, bad);
  });
});

describe('tunnelled destinations', () => {
  it('a cluster identity behind a tunnel endpoint, nothing else', () => {
    assert.equal(
      tunnelledEntry({ prefix: '10.244.1.2/32', identity: 300, tunnelEndpoint: '198.18.0.12' }),
      true,
    );
    assert.equal(tunnelledEntry({ prefix: '10.244.0.3/32', identity: 300 }), false, 'a local pod');
    assert.equal(
      tunnelledEntry({ prefix: '198.18.0.12/32', identity: 6, tunnelEndpoint: '198.18.0.12' }),
      false,
      'a reserved identity (remote-node)',
    );
    assert.equal(
      tunnelledEntry({ prefix: '1.2.3.0/24', identity: (1 << 24) | 5, tunnelEndpoint: '198.18.0.12' }),
      false,
      'a CIDR identity',
    );
    assert.equal(tunnelledEntry(undefined), false, 'unknown (world)');
  });
});

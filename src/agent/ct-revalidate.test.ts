import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CtTuple } from '../datapath/maps/ct/index.js';
import type { PolicyMapEntry } from '../policy/entry.js';
import { connectionsToRevoke } from './ct-revalidate.js';

const entry = (e: Partial<PolicyMapEntry>): PolicyMapEntry => ({
  identity: 0,
  direction: 1,
  protocol: 0,
  port: 0,
  prefixLen: 40,
  deny: false,
  proxyPort: 0,
  cookie: 1,
  l4Prefix: 0,
  ...e,
});
const conn = (c: Partial<CtTuple>): CtTuple => ({
  family: 4,
  src: '10.244.0.2',
  dst: '10.244.0.3',
  sport: 40000,
  dport: 80,
  proto: 6,
  direction: 'ingress',
  ...c,
});
const ipcache = [
  { prefix: '10.244.0.2/32', identity: 256 },
  { prefix: '10.244.0.3/32', identity: 257 },
  { prefix: '10.244.0.4/32', identity: 258 },
];

test('keeps connections the new policy still allows, revokes the others', () => {
  // Server 10.244.0.3 now accepts TCP/80 from identity 256 only; its egress is open.
  const server = {
    entries: [
      entry({ identity: 256, protocol: 6, port: 80, prefixLen: 64, l4Prefix: 24 }),
      entry({ identity: 0, direction: 2 }),
    ],
  };
  const byIP = new Map([['10.244.0.3', server]]);
  const allowed = conn({});
  const fromOther = conn({ src: '10.244.0.4' });
  const otherPort = conn({ dport: 81 });
  const udp = conn({ proto: 17 });
  const outbound = conn({ src: '10.244.0.3', dst: '192.0.2.10', direction: 'egress' });
  const notOurs = conn({ src: '10.244.0.4', dst: '10.244.0.2' });
  const revoked = connectionsToRevoke([allowed, fromOther, otherPort, udp, outbound, notOurs], byIP, ipcache);
  assert.deepEqual(revoked, [fromOther, otherPort, udp]);
});

test('a deny entry revokes, and a fail-closed endpoint (no entries) revokes everything', () => {
  const denied = new Map([
    [
      '10.244.0.3',
      {
        entries: [
          entry({ identity: 0, protocol: 0 }),
          entry({ identity: 0, protocol: 17, port: 53, prefixLen: 64, l4Prefix: 24, deny: true }),
        ],
      },
    ],
  ]);
  const dns = conn({ proto: 17, dport: 53 });
  assert.deepEqual(connectionsToRevoke([conn({}), dns], denied, ipcache), [dns]);
  const closed = new Map([['10.244.0.3', { entries: [] }]]);
  assert.equal(connectionsToRevoke([conn({}), dns], closed, ipcache).length, 2);
});

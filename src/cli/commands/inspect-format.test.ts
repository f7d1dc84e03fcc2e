import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PolicyMapEntry } from '../../datapath/maps/policy/index.js';
import { portRangePrefixes } from '../../shared/port-prefix.js';
import {
  blockRange,
  durationText,
  hostPort,
  policyRows,
  portProtoText,
  protoName,
} from './inspect-format.js';

const entry = (
  key: Partial<PolicyMapEntry['key']>,
  value: Partial<PolicyMapEntry['value']> = {},
): PolicyMapEntry => ({
  key: { identity: 256, direction: 'ingress', protocol: 6, port: 0, portPrefixLen: 0, ...key },
  value: { deny: false, auth: false, proxyPort: 0, cookie: 1, ...value },
});

describe('inspect formatting', () => {
  it('names protocols, numbers the unknown ones', () => {
    assert.deepEqual([0, 1, 6, 17, 58, 132, 47].map(protoName), [
      'ANY',
      'ICMP',
      'TCP',
      'UDP',
      'ICMPv6',
      'SCTP',
      '47',
    ]);
  });

  it('turns aligned blocks into port ranges', () => {
    assert.deepEqual(blockRange(80, 16), { port: 80, endPort: 80 });
    assert.deepEqual(blockRange(80, 15), { port: 80, endPort: 81 });
    assert.deepEqual(blockRange(0, 0), { port: 0, endPort: 65535 });
  });

  it('prints port/proto like cilium, ranges as ranges', () => {
    assert.equal(portProtoText({ protocol: 0 }), 'ANY');
    assert.equal(portProtoText({ protocol: 6 }), 'ANY/TCP');
    assert.equal(portProtoText({ protocol: 17, port: 53, endPort: 53 }), '53/UDP');
    assert.equal(portProtoText({ protocol: 6, port: 80, endPort: 81 }), '80-81/TCP');
  });

  it('merges the blocks of one range back, and only those', () => {
    const blocks = portRangePrefixes(1000, 1999).map((b) => entry({ protocol: 17, ...b }, { cookie: 9 }));
    assert.equal(blocks.length, 7); // 1000-1007, 1008-1023, ... 1984-1999
    const rows = policyRows([
      ...blocks.reverse(),
      entry({ port: 2000, portPrefixLen: 16, protocol: 17 }, { cookie: 10 }), // adjacent, other rule
      entry({ port: 80, portPrefixLen: 16 }),
      entry({ port: 81, portPrefixLen: 16 }, { deny: true }), // adjacent, other verdict
      entry({ direction: 'egress', protocol: 0 }),
      entry({ identity: 0, port: 443, portPrefixLen: 16 }),
    ]);
    assert.deepEqual(
      rows.map((r) => `${r.policy} ${r.direction} ${r.identity} ${portProtoText(r)} ${r.cookie}`),
      [
        'Allow ingress 0 443/TCP 1',
        'Allow ingress 256 80/TCP 1',
        'Deny ingress 256 81/TCP 1',
        'Allow ingress 256 1000-1999/UDP 9',
        'Allow ingress 256 2000/UDP 10',
        'Allow egress 256 ANY 1',
      ],
    );
  });

  it('formats durations and host:port', () => {
    assert.deepEqual([0, 59, 61, 3599, 3600, 86399, 90000, -5].map(durationText), [
      '0s',
      '59s',
      '1m1s',
      '59m59s',
      '1h0m',
      '23h59m',
      '1d1h',
      '0s',
    ]);
    assert.equal(hostPort('10.0.0.1', 80), '10.0.0.1:80');
    assert.equal(hostPort('fd00::1', 53), '[fd00::1]:53');
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ValidationError } from '../shared/errors.js';
import { bigToIp6, host4, host6, parseCidr4, parseCidr6 } from './cidr.js';
import { parseLabSpec, withNodeCount } from './spec.js';

describe('lab spec', () => {
  it('fills in the defaults', () => {
    assert.deepEqual(parseLabSpec({}), {
      name: 'lab',
      nodes: [{ name: 'node1', podCIDR: '10.244.0.0/24' }],
      externals: [],
    });
    assert.deepEqual(parseLabSpec({ dns: {} }).dns, { ttl: 3600, records: {} });
    // A declared name: addresses, or an alias (CNAME).
    const records = { 'api.example.com': ['192.0.2.10'], 'www.example.com': { cname: 'api.example.com' } };
    assert.deepEqual(parseLabSpec({ dns: { records } }).dns?.records, records);
    assert.throws(
      () => parseLabSpec({ dns: { records: { 'www.example.com': { cname: 'not a name' } } } }, 'lab.yaml'),
      /lab\.yaml: Lab: dns\.records\["www\.example\.com"\]\.cname: must be a list of addresses or \{cname: <name>\}: must be a DNS name/,
    );
    assert.throws(
      () => parseLabSpec({ dns: { records: { 'www.example.com': ['192.0.2.300'] } } }),
      /dns\.records\["www\.example\.com"\]\[0\]: must be an IP address/,
    );
    const s = parseLabSpec({ externals: [{ name: 'db', ip: '192.0.2.5', serves: [{ port: 5432 }] }] });
    assert.deepEqual(s.externals[0]?.serves, [{ port: 5432, protocol: 'TCP' }]);
    const n = parseLabSpec({ nodes: [{ serves: [{ port: 80 }, { port: 81, protocol: 'UDP' }] }] });
    assert.deepEqual(n.nodes[0]?.serves, [
      { port: 80, protocol: 'TCP' },
      { port: 81, protocol: 'UDP' },
    ]);
  });

  it('gives node k the name node<k> and the pod CIDR 10.244.<k-1>.0/24', () => {
    assert.deepEqual(parseLabSpec({ nodes: [{}, { name: 'b' }, { podCIDR: '10.96.0.0/24' }] }).nodes, [
      { name: 'node1', podCIDR: '10.244.0.0/24' },
      { name: 'b', podCIDR: '10.244.1.0/24' },
      { name: 'node3', podCIDR: '10.96.0.0/24' },
    ]);
    assert.deepEqual(
      withNodeCount(parseLabSpec({}), 3).nodes.map((n) => `${n.name} ${n.podCIDR}`),
      ['node1 10.244.0.0/24', 'node2 10.244.1.0/24', 'node3 10.244.2.0/24'],
    );
    assert.throws(() => withNodeCount(parseLabSpec({}), 9), /--nodes must be 1..8/);
  });

  it('names file and field of every problem', () => {
    try {
      parseLabSpec(
        {
          name: 'Bad_Name',
          nodes: Array.from({ length: 9 }, () => ({})),
          externals: [{ name: 'e', ip: '10.244.0.7' }],
        },
        'lab.yaml',
      );
      assert.fail('expected a ValidationError');
    } catch (err) {
      assert.ok(err instanceof ValidationError);
      assert.deepEqual(
        err.problems.map((p) => [p.code, p.location.file, p.location.field]),
        [
          ['ERR_LAB_SPEC_INVALID', 'lab.yaml', 'name'],
          ['ERR_LAB_SPEC_INVALID', 'lab.yaml', 'nodes'],
        ],
      );
      assert.match(err.problems[1]?.message ?? '', /at most 8 nodes/);
    }
    assert.throws(
      () => parseLabSpec({ nodes: [{ name: 'a' }, { name: 'a', podCIDR: '10.244.0.128/25' }] }),
      (e: ValidationError) =>
        e.problems.map((p) => `${p.location.field}: ${p.message}`).join('\n') ===
        'nodes[1].name: used twice\nnodes[1].podCIDR: overlaps the pod CIDR of node a',
    );
    assert.throws(
      () => parseLabSpec({ nodes: [{}, {}], externals: [{ name: 'e', ip: '10.244.1.9' }] }),
      (e: ValidationError) => e.problems[0]?.location.field === 'externals[0].ip',
    );
    assert.throws(
      () => parseLabSpec({ nodes: [{ podCIDR: '10.244.0.0/33' }] }),
      (e: ValidationError) => e.problems[0]?.location.field === 'nodes[0].podCIDR',
    );
    assert.throws(
      () => parseLabSpec({ externals: [{ name: 'e', ip: '10.244.0.7' }] }),
      (e: ValidationError) => e.problems[0]?.location.field === 'externals[0].ip',
    );
  });
});

describe('cidr', () => {
  it('computes IPv4 and IPv6 host addresses', () => {
    const c = parseCidr4('10.244.0.77/24');
    assert.ok(c);
    assert.equal(host4(c, 1), '10.244.0.1');
    assert.equal(host4(c, 255), '10.244.0.255');
    assert.equal(parseCidr4('10.0.0.0/33'), undefined);
    const c6 = parseCidr6('fd00:10:244::/64');
    assert.ok(c6);
    assert.equal(host6(c6, 1), 'fd00:10:244::1');
    assert.equal(host6(c6, 0x1234), 'fd00:10:244::1234');
    assert.equal(bigToIp6(0n), '::');
    assert.equal(bigToIp6((1n << 112n) | 1n), '1::1');
  });
});

// Cilium's DNS name matching (conformance/l7 semantics 10) and the per-peer verdict.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { judgeDns, nameMatches } from './dns-match.js';
import type { PortL7Policy } from './types.js';

const origin = { kind: 'CiliumNetworkPolicy' as const, namespace: 'x', name: 'p', cookie: 1 };

describe('DNS name matching', () => {
  it('matchName is exact, case-insensitive, trailing dot optional', () => {
    assert.ok(nameMatches({ matchName: 'api.example.com' }, 'API.Example.com.'));
    assert.ok(nameMatches({ matchName: 'api.example.com.' }, 'api.example.com'));
    assert.ok(!nameMatches({ matchName: 'api.example.com' }, 'sub.api.example.com'));
  });

  it('a * stays inside one label; * alone is every name; **. is one or more labels', () => {
    const star = { matchPattern: '*.example.com' };
    assert.ok(nameMatches(star, 'api.example.com'));
    assert.ok(!nameMatches(star, 'example.com'));
    assert.ok(!nameMatches(star, 'sub.api.example.com'));
    const inner = { matchPattern: 'part*ial.example.net' };
    assert.ok(nameMatches(inner, 'partial.example.net'));
    assert.ok(nameMatches(inner, 'part-extra-ial.example.net'));
    assert.ok(!nameMatches(inner, 'part.ial.example.net'));
    assert.ok(!nameMatches(inner, 'xpartial.example.net'));
    assert.ok(nameMatches({ matchPattern: '*' }, 'anything.at.all'));
    const multi = { matchPattern: '**.api.example.com' };
    assert.ok(nameMatches(multi, 'sub.api.example.com'));
    assert.ok(nameMatches(multi, 'a.b.api.example.com'));
    assert.ok(!nameMatches(multi, 'api.example.com'));
    assert.ok(!nameMatches({ matchPattern: 'api.example.com' }, 'apixexample.com'), '. is literal');
  });

  it('judges per peer: an L4-only set opens the port, else a matching rule allows', () => {
    const p: PortL7Policy = {
      protocol: 'UDP',
      port: 53,
      parser: 'dns',
      proxyPort: 10002,
      ruleSets: [
        { identities: [5], dns: [{ matchName: 'api.example.com' }], origin },
        { identities: [6], origin },
      ],
    };
    assert.equal(judgeDns(p, 5, 'api.example.com').allowed, true);
    assert.equal(judgeDns(p, 5, 'www.example.com').allowed, false);
    assert.equal(judgeDns(p, 6, 'www.example.com').allowed, true);
    assert.equal(judgeDns(p, 7, 'api.example.com').allowed, false);
  });
});

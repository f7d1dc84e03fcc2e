// The agent's FQDN cache: TTLs with a minimum, the per-endpoint cap per name, node-wide view,
// expiry that spares addresses with open connections, clean by pattern.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FqdnCache } from './fqdn-cache.js';

describe('FQDN cache', () => {
  it('learns per endpoint and name; the view is node-wide; a renewal is not a change', () => {
    let now = 1000;
    const c = new FqdnCache({ minTtl: 0, maxIpsPerName: 50, now: () => now });
    assert.equal(c.learn(1, 'API.example.com.', [{ ip: '192.0.2.10', ttl: 30 }]).changed, true);
    assert.equal(c.learn(2, 'api.example.com', [{ ip: '192.0.2.10', ttl: 30 }]).changed, false);
    assert.deepEqual(c.view(), [{ name: 'api.example.com', ips: ['192.0.2.10'] }]);
    now += 5000;
    assert.equal(c.learn(1, 'api.example.com', [{ ip: '192.0.2.10', ttl: 30 }]).changed, false);
    assert.equal(c.list()[0]?.expiresAt, 36_000);
  });

  it('applies the minimum TTL and expires, except addresses with open connections', () => {
    let now = 0;
    const c = new FqdnCache({ minTtl: 10, maxIpsPerName: 50, now: () => now });
    c.learn(1, 'a.example.com', [
      { ip: '192.0.2.1', ttl: 1 },
      { ip: '192.0.2.2', ttl: 1 },
    ]);
    now = 5000;
    assert.equal(
      c.gc(() => false),
      0,
      'min TTL 10 s',
    );
    now = 11_000;
    assert.equal(
      c.gc((ip) => ip === '192.0.2.2'),
      1,
    );
    assert.deepEqual(c.view(), [{ name: 'a.example.com', ips: ['192.0.2.2'] }]);
    assert.equal(
      c.gc(() => false),
      1,
    );
    assert.deepEqual(c.view(), []);
  });

  it('keeps at most N addresses per endpoint and name, the oldest evicted and counted', () => {
    const c = new FqdnCache({ minTtl: 0, maxIpsPerName: 2, now: () => 0 });
    c.learn(1, 'x.example.com', [{ ip: '192.0.2.1', ttl: 60 }]);
    c.learn(1, 'x.example.com', [{ ip: '192.0.2.2', ttl: 60 }]);
    c.learn(1, 'x.example.com', [{ ip: '192.0.2.3', ttl: 60 }]);
    assert.deepEqual(c.view(), [{ name: 'x.example.com', ips: ['192.0.2.2', '192.0.2.3'] }]);
    assert.equal(c.evicted, 1);
  });

  it('cleans all, or the names a pattern matches', () => {
    const c = new FqdnCache({ minTtl: 0, maxIpsPerName: 50, now: () => 0 });
    c.learn(1, 'a.example.com', [{ ip: '192.0.2.1', ttl: 60 }]);
    c.learn(1, 'b.other.org', [{ ip: '192.0.2.2', ttl: 60 }]);
    assert.equal(c.clean('*.example.com'), 1);
    assert.deepEqual(
      c.view().map((v) => v.name),
      ['b.other.org'],
    );
    assert.equal(c.clean(), 1);
    assert.deepEqual(c.view(), []);
  });
});

describe('FQDN cache across a restart', () => {
  it('held() is what one endpoint holds for one name; restore() puts a saved list back as it was', () => {
    let now = 1000;
    const c = new FqdnCache({ minTtl: 0, maxIpsPerName: 2, now: () => now });
    c.learn(1, 'a.example.com', [{ ip: '192.0.2.1', ttl: 10 }]);
    now = 2000;
    c.learn(1, 'A.example.com.', [{ ip: '192.0.2.2', ttl: 10 }]);
    c.learn(2, 'a.example.com', [{ ip: '192.0.2.3', ttl: 10 }]);
    assert.deepEqual(c.held(1, 'a.example.com.'), [
      { ip: '192.0.2.1', expiresAt: 11_000 },
      { ip: '192.0.2.2', expiresAt: 12_000 },
    ]);
    assert.deepEqual(c.held(3, 'a.example.com'), []);
    // JSON round trip, as the agent's local state stores it.
    const saved = JSON.parse(JSON.stringify(c.list())) as ReturnType<FqdnCache['list']>;
    const r = new FqdnCache({ minTtl: 0, maxIpsPerName: 2, now: () => now });
    r.restore(saved);
    assert.deepEqual(r.list(), c.list());
    assert.deepEqual(r.view(), c.view());
    // The oldest still goes first after the restore.
    now = 3000;
    r.learn(1, 'a.example.com', [{ ip: '192.0.2.9', ttl: 10 }]);
    assert.deepEqual(
      r.held(1, 'a.example.com').map((h) => h.ip),
      ['192.0.2.2', '192.0.2.9'],
    );
    assert.equal(r.evicted, 1);
  });
});

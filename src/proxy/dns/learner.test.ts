// The DNS proxy's record of what the agent's FQDN cache holds: answers that bring nothing new skip
// the agent (their renewals follow in a batch); anything else waits for the agent, pipelined one
// request at a time; forget() and a failed request make answers wait again.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FqdnCache } from '../../agent/fqdn-cache.js';
import { FqdnLearner, type LearnItem } from './learner.js';

/** The agent's side: a real FqdnCache; each request recorded; `gate` holds answers back. */
function agent(now: () => number) {
  const cache = new FqdnCache({ minTtl: 0, maxIpsPerName: 50, now });
  const requests: LearnItem[][] = [];
  let gate: Promise<void> = Promise.resolve();
  let fail = false;
  return {
    cache,
    requests,
    hold(p: Promise<void>) {
      gate = p;
    },
    fail(v: boolean) {
      fail = v;
    },
    send: async (items: LearnItem[]) => {
      requests.push(items);
      await gate;
      if (fail) throw new Error('agent unreachable');
      for (const it of items) cache.learn(it.endpointId, it.name, it.answers);
      return items.map((it) => cache.held(it.endpointId, it.name));
    },
  };
}

const a = (ip: string, ttl = 60) => ({ ip, ttl });

describe('FQDN learner (DNS proxy)', () => {
  it('asks the agent for a new address, not for one it holds; the renewal follows in a batch', async () => {
    const now = 1_000_000;
    const ag = agent(() => now);
    const l = new FqdnLearner({ send: ag.send, now: () => now, renewAfterMs: 10 });
    await l.learn({ endpointId: 1, name: 'api.example.com.', answers: [a('192.0.2.1')] });
    assert.equal(ag.requests.length, 1);
    // The same answer again (any case, with or without the dot): released without a request.
    await l.learn({ endpointId: 1, name: 'API.example.com', answers: [a('192.0.2.1')] });
    await l.learn({ endpointId: 1, name: 'api.example.com', answers: [a('192.0.2.1')] });
    assert.equal(ag.requests.length, 1);
    assert.deepEqual([l.stats.skipped, l.stats.waited], [2, 1]);
    await sleep(50);
    // The renewal of the skipped answers, coalesced (the latest one), within renewAfterMs.
    assert.equal(ag.requests.length, 2);
    assert.deepEqual(ag.requests[1], [{ endpointId: 1, name: 'api.example.com', answers: [a('192.0.2.1')] }]);
    // Another endpoint or one more address: the agent first.
    await l.learn({ endpointId: 2, name: 'api.example.com', answers: [a('192.0.2.1')] });
    await l.learn({ endpointId: 1, name: 'api.example.com', answers: [a('192.0.2.1'), a('192.0.2.2')] });
    assert.equal(ag.requests.length, 4);
    // A renewal pending when an answer must wait goes in the same request.
    await l.learn({ endpointId: 2, name: 'api.example.com', answers: [a('192.0.2.1')] });
    await l.learn({ endpointId: 1, name: 'b.example.com', answers: [a('192.0.2.5')] });
    assert.deepEqual(
      ag.requests[4]?.map((x) => `${x.endpointId} ${x.name}`),
      ['1 b.example.com', '2 api.example.com'],
    );
    // Nothing without addresses is sent.
    await l.learn({ endpointId: 1, name: 'x.example.com', answers: [] });
    await sleep(50);
    assert.equal(ag.requests.length, 5);
    l.close();
  });

  it('an address close to its expiry at the agent waits for the agent again', async () => {
    let now = 1_000_000;
    const ag = agent(() => now);
    const l = new FqdnLearner({ send: ag.send, now: () => now, marginMs: 5000 });
    await l.learn({ endpointId: 1, name: 'a.example.com', answers: [a('192.0.2.1', 10)] });
    now += 4000;
    await l.learn({ endpointId: 1, name: 'a.example.com', answers: [a('192.0.2.1', 10)] });
    assert.equal(ag.requests.length, 1, '6 s left: skipped');
    now += 2000;
    await l.learn({ endpointId: 1, name: 'a.example.com', answers: [a('192.0.2.1', 10)] });
    assert.equal(ag.requests.length, 2, '4 s left: asked');
    l.close();
  });

  it('pipelines: answers arriving while a request runs go together in the next one, each released after it', async () => {
    const now = 1_000_000;
    const ag = agent(() => now);
    const l = new FqdnLearner({ send: ag.send, now: () => now });
    let open!: () => void;
    ag.hold(new Promise<void>((r) => (open = r)));
    const released: string[] = [];
    const first = l
      .learn({ endpointId: 1, name: 'a.example.com', answers: [a('192.0.2.1')] })
      .then(() => released.push('a'));
    const more = ['b', 'c', 'd'].map((n, i) =>
      l
        .learn({ endpointId: 1, name: `${n}.example.com`, answers: [a(`192.0.2.${i + 2}`)] })
        .then(() => released.push(n)),
    );
    await sleep(10);
    assert.deepEqual(released, [], 'nothing released before the agent answered');
    assert.equal(ag.requests.length, 1);
    ag.hold(Promise.resolve());
    open();
    await Promise.all([first, ...more]);
    assert.deepEqual(
      ag.requests.map((r) => r.map((x) => x.name)),
      [['a.example.com'], ['b.example.com', 'c.example.com', 'd.example.com']],
    );
    assert.deepEqual(released, ['a', 'b', 'c', 'd']);
    l.close();
  });

  it('forget() and a failed request make the same answer wait for the agent again', async () => {
    const now = 1_000_000;
    const ag = agent(() => now);
    const l = new FqdnLearner({ send: ag.send, now: () => now, renewAfterMs: 100_000 });
    const item = { endpointId: 1, name: 'a.example.com', answers: [a('192.0.2.1')] };
    await l.learn(item);
    assert.equal(l.size(), 1);
    assert.equal(l.forget(), 1);
    await l.learn(item);
    assert.equal(ag.requests.length, 2);
    ag.fail(true);
    await assert.rejects(l.learn({ ...item, answers: [a('192.0.2.7')] }), /agent unreachable/);
    await assert.rejects(l.learn(item), /agent unreachable/, 'not known held any more');
    ag.fail(false);
    await l.learn(item);
    await l.learn(item);
    assert.equal(ag.requests.length, 5);
    l.close();
  });

  it('stays bounded: past 4096 names, those whose addresses all expired at the agent are swept', async () => {
    let now = 1_000_000;
    const ag = agent(() => now);
    const l = new FqdnLearner({ send: ag.send, now: () => now, renewAfterMs: 100_000 });
    await Promise.all(
      Array.from({ length: 4100 }, (_, i) =>
        l.learn({ endpointId: 1, name: `n${i}.example.com`, answers: [a('192.0.2.1', 10)] }),
      ),
    );
    await l.learn({ endpointId: 1, name: 'long.example.com', answers: [a('192.0.2.2', 3600)] });
    assert.equal(l.size(), 4101);
    now += 20_000;
    await l.learn({ endpointId: 1, name: 'long.example.com', answers: [a('192.0.2.2', 3600)] });
    assert.equal(l.size(), 1, 'only the name with life left');
    l.close();
  });
});

// `policy diff --replace` against the conformance corpus, through the engine: for every pair of cases
// on the same topology (and the same label changes), with the first case's policies in force,
// diffing the second's lists exactly the probes whose expected verdict differs between the two
// cases (pod to pod, not loopback, both expectations known). The expectations are upstream's, not
// the engine's; the diff is computed by verdictDiff() over every declared port of every pod.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { computePolicy, type EngineEndpoint, type EngineOutput } from '../policy/engine.js';
import { verdictDiff, type DiffPod } from '../policy/verdict-diff.js';
import { conformanceDir } from '../shared/paths.js';
import { defaultAddresses, listCaseFiles, loadCase, type ConformanceCase } from './case.js';
import { caseState } from './runner.js';

interface Prepared {
  c: ConformanceCase;
  out: EngineOutput;
  pods: DiffPod[];
  /** "from>to>port/proto" -> expected allowed (pod to pod, not loopback, known). */
  expected: Map<string, boolean>;
}

const key = (from: string, to: string, port: number, protocol: string) => `${from}>${to}>${port}/${protocol}`;

function prepare(c: ConformanceCase): Prepared {
  const addrs = defaultAddresses(c.topology);
  const state = caseState(c, addrs);
  const ids = new Map(c.topology.pods.map((p, i) => [`${p.namespace}/${p.name}`, i + 1]));
  const endpoints: EngineEndpoint[] = c.topology.pods.map((p) => {
    const name = `${p.namespace}/${p.name}`;
    return {
      id: ids.get(name) as number,
      namespace: p.namespace,
      pod: p.name,
      labels: state.pods.find((s) => `${s.namespace}/${s.name}` === name)?.labels ?? p.labels,
      ips: [addrs.pods.get(name) as string],
      namedPorts: p.containers.flatMap((k) =>
        k.portName ? [{ name: k.portName, port: k.port, protocol: k.protocol }] : [],
      ),
      ...(p.serviceAccount ? { serviceAccount: p.serviceAccount } : {}),
    };
  });
  const out = computePolicy({
    namespaces: state.namespaces,
    endpoints,
    nodeIPs: [addrs.nodeIP],
    policies: state.policies,
  });
  const pods = c.topology.pods.map((p) => ({
    name: `${p.namespace}/${p.name}`,
    endpointId: ids.get(`${p.namespace}/${p.name}`) as number,
    ports: p.containers.map((k) => ({ port: k.port, protocol: k.protocol })),
  }));
  const expected = new Map<string, boolean>();
  for (const e of c.expect ?? []) {
    if (e.allowed === null || e.loopback || e.from === e.to || !ids.has(e.from) || !ids.has(e.to)) continue;
    expected.set(key(e.from, e.to, e.backendPort ?? e.port, e.protocol), e.allowed);
  }
  return { c, out, pods, expected };
}

const labelKey = (c: ConformanceCase) => JSON.stringify(c.labelChanges);

for (const suite of ['netpol', 'cnp']) {
  describe(`policy diff --replace over conformance/${suite} case pairs`, () => {
    const cases = listCaseFiles(join(conformanceDir, suite)).map(loadCase).filter((c) => c.expect);
    const prepared = cases.map(prepare);
    it('lists exactly the probes whose expected verdict differs', () => {
      let pairs = 0;
      let differing = 0;
      for (const a of prepared)
        for (const b of prepared) {
          if (a === b || a.c.topology.key !== b.c.topology.key || labelKey(a.c) !== labelKey(b.c)) continue;
          // The same pods with the same endpoint ids: A's in force, B's policies replacing them.
          const d = verdictDiff({ pods: a.pods, before: a.out, after: b.out });
          const listed = new Map(d.changes.map((ch) => [key(ch.from, ch.to, ch.port, ch.protocol), ch]));
          for (const [k, wantA] of a.expected) {
            const wantB = b.expected.get(k);
            if (wantB === undefined) continue;
            const ch = listed.get(k);
            const where = `${a.c.id} -> ${b.c.id}: ${k}`;
            if (wantA === wantB) assert.equal(ch, undefined, `${where} is expected unchanged but listed`);
            else {
              differing++;
              assert.ok(ch, `${where} is expected to change (${wantA} -> ${wantB}) but not listed`);
              assert.equal(ch.before, wantA ? 'allowed' : 'denied', where);
              assert.equal(ch.after, wantB ? 'allowed' : 'denied', where);
              assert.ok(ch.beforeRule && ch.afterRule, `${where}: names the rules`);
            }
          }
          pairs++;
        }
      assert.ok(pairs > 50, `${pairs} pairs compared`);
      assert.ok(differing > 100, `${differing} differing probes checked`);
    });
  });
}

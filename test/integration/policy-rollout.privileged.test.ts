// Safe policy rollout in a lab with real traffic (the conformance netpol topology: 3 namespaces x 3
// pods, each serving 80/81 on TCP, UDP and SCTP), through the real CLI:
//   - `weir policy diff --replace`: with one conformance case's policies in force, diffing the next
//     case's lists exactly the probes whose expected verdict differs (pod to pod, not loopback);
//     every connection it lists really has its `before` verdict now and its `after` verdict once
//     the second case is applied (TCP and UDP; the lab has no SCTP sockets);
//   - `weir apply --dry-run=server` prints that diff and changes nothing;
//   - bad input gives apply's error and no diff;
//   - policy audit mode (`weir endpoint config ns/pod PolicyAuditMode=Enabled`): denied traffic
//     passes and shows as AUDIT flows naming the reason, counted in metrics (action="audit");
//     Disabled drops it again at once, while a connection the policy allows keeps its entry.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import {
  defaultAddresses,
  listCaseFiles,
  loadCase,
  type ConformanceCase,
} from '../../src/conformance/case.js';
import { datapathProberFactory } from '../../src/conformance/datapath.js';
import { caseState, type ProberSession } from '../../src/conformance/runner.js';
import type { Flow } from '../../src/observe/flow.js';
import type { VerdictDiff } from '../../src/policy/verdict-diff.js';
import { startAgent, stopAgent } from '../../src/agent/spawn.js';
import { Lab } from '../../src/lab/index.js';
import { conformanceDir } from '../../src/shared/paths.js';
import { cli, ok } from '../support/cli.js';

const cases = new Map(
  listCaseFiles(join(conformanceDir, 'netpol')).map((f) => {
    const c = loadCase(f);
    return [c.id, c] as const;
  }),
);
const get = (id: string) => cases.get(id) as ConformanceCase;
/** Pairs on the standard topology without label changes: A in force, B diffed then applied. */
const pairs: [string, string][] = [
  ['001', '003'],
  ['003', '027'],
  ['002', '030'],
  ['053', '035'],
];

const key = (from: string, to: string, port: number, protocol: string) => `${from}>${to}>${port}/${protocol}`;

function expectations(c: ConformanceCase): Map<string, boolean> {
  const out = new Map<string, boolean>();
  for (const e of c.expect ?? [])
    if (e.allowed !== null && !e.loopback && e.from !== e.to)
      out.set(key(e.from, e.to, e.backendPort ?? e.port, e.protocol), e.allowed);
  return out;
}

describe('safe policy rollout (diff, dry run, audit mode) in a lab', { timeout: 900_000 }, () => {
  let session: ProberSession;
  let lab: string;
  let dir: string;

  before(async () => {
    const topology = get('001').topology;
    session = await datapathProberFactory({ timeoutMs: 1500 })(topology);
    lab = session.lab as string;
    dir = await mkdtemp(join(tmpdir(), 'weir-rollout-'));
  });
  after(async () => {
    await session?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const stateOf = (c: ConformanceCase) => caseState(c, session.addresses ?? defaultAddresses(c.topology));
  async function manifestFile(c: ConformanceCase): Promise<string> {
    const file = join(dir, `${c.id}.yaml`);
    await writeFile(
      file,
      stateOf(c)
        .objects.map((o) => stringify(o))
        .join('---\n'),
    );
    return file;
  }
  const probe = async (from: string, to: string, port: number, protocol: 'TCP' | 'UDP') =>
    (await session.probe({ from, to, port, protocol })) as boolean;

  for (const [a, b] of pairs)
    it(`case ${a} in force, diff --replace with case ${b}: exactly the differing probes, and real traffic agrees`, async () => {
      const A = get(a);
      const B = get(b);
      await session.apply(stateOf(A));
      const file = await manifestFile(B);
      const d = JSON.parse(
        await ok(['policy', 'diff', '-f', file, '--replace', '-o', 'json'], lab),
      ) as VerdictDiff;
      assert.deepEqual(Object.keys(d).sort(), ['changes', 'unchanged']);
      // 9 pods x 8 others x 6 ports.
      assert.equal(d.changes.length + d.unchanged, 9 * 8 * 6);
      const listed = new Map(d.changes.map((c) => [key(c.from, c.to, c.port, c.protocol), c]));
      const wantA = expectations(A);
      const wantB = expectations(B);
      let differing = 0;
      for (const [k, ea] of wantA) {
        const eb = wantB.get(k);
        if (eb === undefined) continue;
        if (ea === eb) assert.equal(listed.get(k), undefined, `${k} listed but expected unchanged`);
        else {
          differing++;
          assert.equal(listed.get(k)?.after, eb ? 'allowed' : 'denied', `${k} must be listed`);
        }
      }
      assert.ok(differing > 0, `cases ${a} and ${b} differ somewhere`);
      for (const c of d.changes) {
        assert.deepEqual(Object.keys(c).sort(), [
          'after',
          'afterRule',
          'before',
          'beforeRule',
          'from',
          'port',
          'protocol',
          'to',
        ]);
        assert.match(c.from, /^[xyz]\/[abc]$/);
      }
      const real = d.changes.filter((c) => c.protocol !== 'SCTP');
      // Before the apply: every listed connection has its `before` verdict.
      for (const c of real)
        assert.equal(
          await probe(c.from, c.to, c.port, c.protocol as 'TCP'),
          c.before === 'allowed',
          `${key(c.from, c.to, c.port, c.protocol)} before`,
        );
      // apply --dry-run=server prints the same diff (the default mode merges by name: B's
      // policies added to A's) and applies nothing: the verdicts are still A's.
      const dry = await ok(['apply', '--dry-run=server', '-f', file], lab);
      assert.match(dry, /connections change verdict/);
      if (real[0]) {
        const c = real[0];
        assert.equal(await probe(c.from, c.to, c.port, c.protocol as 'TCP'), c.before === 'allowed');
      }
      await session.apply(stateOf(B));
      for (const c of real)
        assert.equal(
          await probe(c.from, c.to, c.port, c.protocol as 'TCP'),
          c.after === 'allowed',
          `${key(c.from, c.to, c.port, c.protocol)} after`,
        );
      // --delete of B's policies, now the only ones in force: every pod allows everything again,
      // so exactly the connections B denies are listed, as becoming allowed.
      const del = JSON.parse(
        await ok(['policy', 'diff', '-f', file, '--delete', '-o', 'json'], lab),
      ) as VerdictDiff;
      const delListed = new Map(del.changes.map((c) => [key(c.from, c.to, c.port, c.protocol), c]));
      assert.ok(del.changes.every((c) => c.before === 'denied' && c.after === 'allowed'));
      for (const [k, eb] of wantB)
        if (eb) assert.equal(delListed.get(k), undefined, `${k}: allowed by ${b}, unchanged by its deletion`);
        else assert.ok(delListed.get(k), `${k}: denied by ${b}, allowed once it is deleted`);
    });

  it('bad input: the error apply gives, no diff', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(
      file,
      stringify({
        apiVersion: 'networking.k8s.io/v1',
        kind: 'NetworkPolicy',
        metadata: { name: 'bad', namespace: 'nowhere' },
        spec: { podSelector: {}, policyTypes: ['Ingress'] },
      }),
    );
    const diff = await cli(['policy', 'diff', '-f', file], lab);
    const apply = await cli(['apply', '-f', file], lab);
    assert.notEqual(diff.code, 0);
    assert.equal(diff.stdout, '');
    assert.notEqual(apply.code, 0);
    assert.match(diff.stderr, /nowhere/);
    assert.equal(diff.stderr, apply.stderr);
  });

  it('audit mode: denied traffic passes as AUDIT flows, counted; Disabled drops it again', async () => {
    // Case 001: every pod of x denies all ingress.
    await session.apply(stateOf(get('001')));
    assert.equal(await probe('y/a', 'x/a', 80, 'TCP'), false);
    const metric = async () => {
      const text = await ok(['agent', 'metrics'], lab);
      return text
        .split('\n')
        .filter((l) => l.startsWith('weir_policy_verdict_total{') && l.includes('action="audit"'))
        .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
    };
    const audits0 = await metric();
    assert.match(await ok(['endpoint', 'config', 'x/a', 'PolicyAuditMode=Enabled'], lab), /configured/);
    assert.match(await ok(['endpoint', 'get', 'x/a'], lab), /policy audit mode\s+Enabled/);
    assert.equal(await probe('y/a', 'x/a', 80, 'TCP'), true, 'audited: passes');
    assert.equal(await probe('y/a', 'x/a', 81, 'UDP'), true, 'audited: passes');
    // x/b does not audit: still denied.
    assert.equal(await probe('y/a', 'x/b', 80, 'TCP'), false);
    // An allowed connection of x/a (egress is not enforced): kept when audit goes off.
    assert.equal(await probe('x/a', 'y/b', 81, 'UDP'), true);
    let flows: Flow[] = [];
    for (let i = 0; i < 20 && flows.length === 0; i++) {
      const out = await ok(['observe', '--verdict', 'AUDIT', '--last', '200', '-o', 'json'], lab);
      flows = out
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { flow?: Flow } & Flow)
        .map((l) => l.flow ?? l)
        .filter(
          (f) =>
            f.verdict === 'AUDIT' && f.destination?.pod_name === 'a' && f.l4?.TCP?.destination_port === 80,
        );
      if (flows.length === 0) await new Promise((r) => setTimeout(r, 250));
    }
    const f = flows[0];
    assert.ok(f, 'an AUDIT flow y/a -> x/a TCP/80');
    assert.equal(f.source.namespace, 'y');
    assert.equal(f.destination.namespace, 'x');
    assert.equal(f.traffic_direction, 'INGRESS');
    assert.equal(f.drop_reason_desc, 'POLICY_DENIED');
    assert.ok((await metric()) > audits0, 'weir_policy_verdict_total{action="audit"} counted');
    const compact = await ok(['observe', '--verdict', 'AUDIT', '--last', '5'], lab);
    assert.match(compact, /AUDIT/);

    await ok(['endpoint', 'config', 'x/a', 'PolicyAuditMode=Disabled'], lab);
    assert.equal(await probe('y/a', 'x/a', 80, 'TCP'), false, 'enforced again');
    assert.equal(await probe('y/a', 'x/a', 81, 'UDP'), false, 'enforced again');
    const ip = (p: string) => session.addresses.pods.get(p) as string;
    const ct = JSON.parse(await ok(['bpf', 'ct', 'list', '-o', 'json'], lab)) as {
      protocol: string;
      src: string;
      dst: string;
      dport: number;
      direction: string;
      expired: boolean;
    }[];
    const live = (src: string, dst: string, direction: string) =>
      ct.some(
        (c) =>
          c.protocol === 'UDP' &&
          c.src === ip(src) &&
          c.dst === ip(dst) &&
          c.dport === 81 &&
          c.direction === direction &&
          !c.expired,
      );
    assert.ok(live('x/a', 'y/b', 'egress'), 'the allowed x/a -> y/b connection keeps its conntrack entry');
    assert.ok(!live('y/a', 'x/a', 'ingress'), 'the audited y/a -> x/a connection is revoked');

    // The agent's --policy-audit-mode: every endpoint audits, but x/a's own option (Disabled) wins.
    const nodeNetns = (await (await Lab.open(lab)).node()).netns;
    await stopAgent(lab);
    await startAgent({ lab, nodeNetns, settings: { policyAuditMode: true } });
    assert.equal(await probe('y/a', 'x/b', 80, 'TCP'), true, 'x/b audits with the agent');
    assert.equal(await probe('y/a', 'x/a', 80, 'TCP'), false, 'x/a: its own Disabled');
    assert.match(await ok(['endpoint', 'get', 'x/b'], lab), /policy audit mode\s+Enabled/);
    assert.equal(await probe('y/a', 'x/b', 81, 'UDP'), true, 'x/b audits: a UDP connection is tracked');
    const tracked = async () =>
      (
        JSON.parse(await ok(['bpf', 'ct', 'list', '-o', 'json'], lab)) as {
          protocol: string;
          src: string;
          dst: string;
          dport: number;
          direction: string;
          expired: boolean;
        }[]
      ).some(
        (c) =>
          c.protocol === 'UDP' &&
          c.src === ip('y/a') &&
          c.dst === ip('x/b') &&
          c.dport === 81 &&
          c.direction === 'ingress' &&
          !c.expired,
      );
    assert.ok(await tracked(), 'the audited connection is tracked');
    await stopAgent(lab);
    // Off while the agent was down: the restarted agent finds the flag in the kernel's row.
    await startAgent({ lab, nodeNetns, settings: { policyAuditMode: false } });
    assert.ok(!(await tracked()), 'the audited connection is revoked after the restart');
    assert.equal(await probe('y/a', 'x/b', 80, 'TCP'), false, 'enforced again');
  });
});

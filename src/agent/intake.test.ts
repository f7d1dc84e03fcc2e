// The API's intake over a real file Store: validation of a whole apply (all or nothing, errors
// naming file, object and field), pod placement, the one transaction per apply, and the answer
// waiting for the owning nodes. The nodes here are played by a watcher that does what an agent's
// reconciler publishes (its reconciled revision, pod statuses), so the intake's side of that
// protocol is what is tested; the real reconciler is covered by the lab integration tests.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import '../cluster/kinds.js';
import { DesiredView } from '../cluster/desired.js';
import { Informer } from '../cluster/informer.js';
import {
  desiredKey,
  desiredPrefix,
  endpointConfigKey,
  nodeKey,
  podStatusKey,
  reconciledKey,
  statePrefix,
} from '../cluster/keys.js';
import { toDesired, type DesiredObject, type PodStatus } from '../cluster/objects.js';
import { parseManifests } from '../k8s/index.js';
import { ValidationError, WeirError, isCode } from '../shared/errors.js';
import { FileStore } from '../store/file.js';
import type { JsonObject, Store, Watch } from '../store/index.js';
import { Intake } from './intake.js';

const dir = mkdtempSync(join(tmpdir(), 'weir-intake-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const log = pino({ level: 'silent' });

const objs = (yaml: string, file = 'test.yaml'): DesiredObject[] => parseManifests(yaml, file).map(toDesired);
const ns = (name: string) => `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${name}}\n`;
const pod = (name: string, namespace = 'x', extra = '') =>
  `apiVersion: v1\nkind: Pod\nmetadata: {name: ${name}, namespace: ${namespace}${extra}}\nspec: {containers: [{name: c, ports: [{containerPort: 80}]}]}\n`;
const docs = (...d: string[]) => d.join('---\n');

/** Plays a node's agent: on every desired change it publishes what a reconciler would. */
class FakeNode {
  failPods = new Set<string>();
  error: string | undefined;
  silent = false;
  private watch: Watch | undefined;

  constructor(
    readonly store: Store,
    readonly name: string,
    readonly podCIDR = '10.244.0.0/29',
  ) {}

  async start(): Promise<void> {
    await this.store.put(nodeKey(this.name), {
      name: this.name,
      ip: '10.244.0.1',
      podCIDR: this.podCIDR,
      netns: `weir-t-${this.name}`,
      agentPid: process.pid,
      startedAt: '',
    });
    this.watch = await this.store.watch(desiredPrefix, {
      fromRevision: 0,
      onBatch: (b) => {
        if (this.silent) return;
        setTimeout(() => void this.publish(b.revision), 20);
      },
      onError: () => undefined,
    });
  }

  private async publish(revision: number): Promise<void> {
    const { items } = await this.store.list(`${desiredPrefix}Pod/`);
    const ops = [];
    for (const kv of items) {
      const o = kv.value as unknown as DesiredObject;
      if ((o.object as { spec: { nodeName?: string } }).spec.nodeName !== this.name) continue;
      const key = `${o.namespace}/${o.name}`;
      const failed = this.failPods.has(key);
      const st: PodStatus = {
        namespace: o.namespace as string,
        name: o.name,
        node: this.name,
        phase: failed ? 'Failed' : 'Running',
        ...(failed ? { message: 'no veth for you' } : {}),
        ip: '10.244.0.2',
        netns: '',
        hostIfname: '',
        hostIfindex: 0,
        cgroupPath: '',
        ready: !failed,
        observedRevision: kv.modRevision,
      };
      ops.push({
        op: 'put' as const,
        key: podStatusKey(st.namespace, st.name),
        value: st as unknown as JsonObject,
      });
    }
    ops.push({
      op: 'put' as const,
      key: reconciledKey(this.name),
      value: { node: this.name, revision, ...(this.error ? { error: this.error } : {}) },
    });
    await this.store.txn(ops);
  }

  async stop(): Promise<void> {
    await this.watch?.close();
  }
}

describe('intake', () => {
  let store: FileStore;
  let desired: Informer;
  let view: DesiredView;
  let state: Informer;
  let intake: Intake;
  let nodes: FakeNode[];
  let n = 0;

  const make = (s: Store) =>
    new Intake({
      store: s,
      lab: 'tlab',
      desired,
      view,
      state,
      allocateServices: () => (o) => o,
      log,
      reconcileTimeoutMs: 2000,
    });

  beforeEach(async () => {
    store = await FileStore.open(join(dir, `s${++n}`, 'store.json'));
    nodes = [new FakeNode(store, 'node1')];
    await nodes[0]?.start();
    desired = new Informer(store, desiredPrefix);
    view = new DesiredView(desired);
    state = new Informer(store, statePrefix);
    await desired.start();
    await state.start();
    intake = make(store);
  });
  afterEach(async () => {
    for (const x of nodes) await x.stop();
    await desired.stop();
    await state.stop();
    await store.close();
  });

  const stored = async (kind: string, name: string, namespace?: string) =>
    (await store.get(desiredKey({ kind, name, ...(namespace ? { namespace } : {}) })))?.value as
      (DesiredObject & { object: { spec: { nodeName?: string } } }) | undefined;

  it('writes an apply in one revision, places pods, and answers once the node reconciled it', async () => {
    const before = await store.revision();
    const results = await intake.apply(objs(docs(ns('x'), pod('a'), pod('b'))));
    assert.deepEqual(results, [
      { object: 'namespace/x', action: 'created' },
      { object: 'pod/a', namespace: 'x', action: 'created' },
      { object: 'pod/b', namespace: 'x', action: 'created' },
    ]);
    const a = await store.get(desiredKey({ kind: 'Pod', namespace: 'x', name: 'a' }));
    assert.equal((a?.value as unknown as DesiredObject).file, 'test.yaml');
    assert.equal((await stored('Pod', 'b', 'x'))?.object.spec.nodeName, 'node1');
    assert.equal(a?.modRevision, before + 1, 'one revision for the whole apply (after the node record)');
    // Answered only after the node published that revision.
    const rec = (await store.get(reconciledKey('node1')))?.value as { revision: number };
    assert.ok(rec.revision >= (a?.modRevision ?? Infinity));
    // The same again changes nothing and writes nothing.
    const rev = await store.revision();
    assert.deepEqual(
      (await intake.apply(objs(docs(ns('x'), pod('a'))))).map((r) => r.action),
      ['unchanged', 'unchanged'],
    );
    assert.equal(await store.revision(), rev);
    // A changed pod is configured; its port protocol was stored with its default.
    const changed = await intake.apply(objs(pod('a', 'x', ', labels: {tier: web}')));
    assert.deepEqual(changed, [{ object: 'pod/a', namespace: 'x', action: 'configured' }]);
    const ports = (await stored('Pod', 'a', 'x'))?.object as { spec: { containers: { ports: unknown[] }[] } };
    assert.deepEqual(ports.spec.containers[0]?.ports, [{ containerPort: 80, protocol: 'TCP' }]);
  });

  it('dry runs validate as apply and delete do, and write nothing', async () => {
    await intake.apply(objs(docs(ns('x'), pod('a'))));
    const rev = await store.revision();
    const np = `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}}\n`;
    const got = intake.dryRunApply(objs(docs(np, pod('a'))));
    assert.deepEqual(
      got.map((o) => `${o.kind}/${o.name}`),
      ['NetworkPolicy/p', 'Pod/a'],
    );
    const bad = objs(np.replace('namespace: x', 'namespace: nowhere'), 'bad.yaml');
    let applyErr = '';
    await intake.apply(bad).catch((e: Error) => (applyErr = e.message));
    assert.throws(
      () => intake.dryRunApply(bad),
      (e: Error) => e.message === applyErr && /namespaces "nowhere" not found/.test(e.message),
    );
    assert.deepEqual(
      intake.dryRunDelete([{ kind: 'Pod', namespace: 'x', name: 'a' }]).map((o) => o.name),
      ['a'],
    );
    assert.throws(
      () => intake.dryRunDelete([{ kind: 'Pod', namespace: 'x', name: 'zz' }]),
      (e: unknown) => e instanceof ValidationError && e.problems[0]?.code === 'ERR_LAB_NOT_FOUND',
    );
    assert.equal(await store.revision(), rev);
  });

  it('endpoint options: written for a desired pod, answered once reconciled, gone with the pod', async () => {
    await intake.apply(objs(docs(ns('x'), pod('a'))));
    const key = endpointConfigKey('x', 'a');
    assert.deepEqual(await intake.configureEndpoint('x', 'a', { policyAuditMode: true }), [
      { object: 'endpoint/a', namespace: 'x', action: 'configured' },
    ]);
    assert.equal(((await store.get(key))?.value as { policyAuditMode?: boolean }).policyAuditMode, true);
    assert.deepEqual(
      (await intake.configureEndpoint('x', 'a', { policyAuditMode: true })).map((r) => r.action),
      ['unchanged'],
    );
    await assert.rejects(intake.configureEndpoint('x', 'nope', { policyAuditMode: true }), (e: unknown) =>
      isCode(e, 'ERR_LAB_NOT_FOUND'),
    );
    await intake.delete([{ kind: 'Pod', namespace: 'x', name: 'a' }]);
    assert.equal(await store.get(key), undefined);
  });

  it('refuses a whole apply for one bad object, naming file, object and field; writes nothing', async () => {
    await intake.apply(objs(ns('x')));
    const rev = await store.revision();
    await assert.rejects(
      intake.apply(objs(docs(pod('ok'), pod('lost', 'nowhere')), 'bad.yaml')),
      (err: unknown) => {
        assert.ok(err instanceof ValidationError);
        assert.equal(
          err.message,
          'bad.yaml: Pod nowhere/lost: metadata.namespace: namespaces "nowhere" not found',
        );
        assert.equal(err.problems[0]?.code, 'ERR_K8S_NAMESPACE_NOT_FOUND');
        return true;
      },
    );
    assert.equal(await store.revision(), rev);
    assert.equal(await stored('Pod', 'ok', 'x'), undefined);
    // Validated again by the API: a request the CLI did not check is refused the same way.
    const raw: DesiredObject = {
      apiVersion: 'v1',
      kind: 'Pod',
      namespace: 'x',
      name: 'p',
      file: 'raw.json',
      object: {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'p', namespace: 'x' },
        spec: { containers: [] },
      },
    };
    await assert.rejects(
      intake.apply([raw]),
      /raw\.json: Pod x\/p: spec\.containers: a pod needs at least one container/,
    );
    await assert.rejects(intake.apply([{ ...raw, kind: 'Gadget', apiVersion: 'v9' }]), (e: unknown) =>
      isCode(e, 'ERR_K8S_KIND_UNKNOWN'),
    );
    assert.equal(await store.revision(), rev);
  });

  it('keeps pods within their node: pod CIDR room, names, workload and runtime annotations and node are checked', async () => {
    await intake.apply(objs(docs(ns('x'), ns('a'), ns('a-b'))));
    // A /29 has 5 pod addresses.
    await intake.apply(objs(docs(pod('p1'), pod('p2'), pod('p3'), pod('p4'))));
    await assert.rejects(intake.apply(objs(docs(pod('p5'), pod('p6')))), (e: unknown) => {
      assert.ok(e instanceof ValidationError);
      assert.equal(e.problems[0]?.code, 'ERR_LAB_IPAM_EXHAUSTED');
      assert.match(e.message, /10\.244\.0\.0\/29 of node node1 has no room for 2 more pods \(4 of 5 used\)/);
      return true;
    });
    await intake.apply(objs(pod('c', 'a-b')));
    await assert.rejects(
      intake.apply(objs(pod('b-c', 'a'))),
      /its lab name weir-tlab-node1-a-b-c is already used by pod a-b\/c/,
    );
    await assert.rejects(
      intake.apply(objs(pod('p1', 'x', ', annotations: {weir.dev/workload: none}'), 'p1.yaml')),
      /p1\.yaml: Pod x\/p1: metadata\.annotations\["weir\.dev\/workload"\]: annotation weir\.dev\/workload cannot change/,
    );
    await assert.rejects(
      intake.apply(objs(pod('p1', 'x', ', annotations: {weir.dev/runtime: cni}'), 'p1.yaml')),
      /p1\.yaml: Pod x\/p1: metadata\.annotations\["weir\.dev\/runtime"\]: annotation weir\.dev\/runtime cannot change/,
    );
    assert.throws(
      () => objs(pod('p1', 'x', ', annotations: {weir.dev/runtime: docker}'), 'p1.yaml'),
      /metadata\.annotations\["weir\.dev\/runtime"\]: must be "cni"/,
    );
    await assert.rejects(
      intake.apply(objs(docs(pod('p1').replace('spec: {', 'spec: {nodeName: node2, ')))),
      /Pod x\/p1: spec\.nodeName: the pod runs on node node1; it cannot move/,
    );
    await assert.rejects(
      intake.apply(objs(docs(pod('new').replace('spec: {', 'spec: {nodeName: elsewhere, ')))),
      /spec\.nodeName: no node 'elsewhere' \(nodes: node1\)/,
    );
  });

  it('spreads pods over the registered nodes', async () => {
    const two = new FakeNode(store, 'node2');
    nodes.push(two);
    await two.start();
    await state.waitRevision(await store.revision());
    await intake.apply(objs(docs(ns('x'), pod('a'), pod('b'), pod('c'), pod('d'))));
    const placed = await Promise.all(
      ['a', 'b', 'c', 'd'].map(async (p) => (await stored('Pod', p, 'x'))?.object.spec.nodeName),
    );
    assert.deepEqual([...placed].sort(), ['node1', 'node1', 'node2', 'node2']);
  });

  it('deletes all or nothing: a namespace only with its pods, never default', async () => {
    await intake.apply(objs(docs(ns('x'), pod('a'))));
    await assert.rejects(intake.delete([{ kind: 'Namespace', name: 'x', file: 'x.yaml' }]), (e: unknown) => {
      assert.match(String(e), /x\.yaml: Namespace x: metadata\.name: namespace still has pods: x\/a/);
      return true;
    });
    await assert.rejects(
      intake.delete([{ kind: 'Namespace', name: 'default' }]),
      /default namespace cannot be deleted/,
    );
    await assert.rejects(
      intake.delete([{ kind: 'Pod', namespace: 'x', name: 'zz' }]),
      /Pod x\/zz does not exist/,
    );
    assert.deepEqual(
      await intake.delete([{ kind: 'Pod', namespace: 'x', name: 'zz' }], { ignoreNotFound: true }),
      [{ object: 'pod/zz', namespace: 'x', action: 'not found' }],
    );
    const r = await intake.delete([
      { kind: 'Pod', namespace: 'x', name: 'a' },
      { kind: 'Namespace', name: 'x' },
    ]);
    assert.deepEqual(
      r.map((x) => x.action),
      ['deleted', 'deleted'],
    );
    assert.equal(await stored('Namespace', 'x'), undefined);
  });

  it("reports a node's failure: a pod it could not start, a pass that failed, a node that does not answer", async () => {
    await intake.apply(objs(ns('x')));
    nodes[0]?.failPods.add('x/bad');
    await assert.rejects(intake.apply(objs(pod('bad'), 'bad.yaml')), (e: unknown) => {
      assert.ok(isCode(e, 'ERR_API_POD_FAILED'));
      assert.match(
        String(e),
        /bad\.yaml: Pod x\/bad: pod could not be started on node node1: no veth for you/,
      );
      return true;
    });
    (nodes[0] as FakeNode).error = 'map full';
    await assert.rejects(
      intake.apply(objs(pod('c'))),
      /node node1 failed to put revision \d+ in force \(it retries\): map full/,
    );
    (nodes[0] as FakeNode).error = undefined;
    (nodes[0] as FakeNode).silent = true;
    await assert.rejects(intake.apply(objs(pod('d'))), (e: unknown) => {
      assert.ok(e instanceof WeirError && e.code === 'ERR_API_RECONCILE_TIMEOUT');
      // The wait is the configured 2 s plus 2 s for the one pod of the apply.
      assert.match(e.message, /stored, but node node1 did not reconcile revision \d+ within 4 s/);
      return true;
    });
  });

  it('serialises concurrent API writers on the intake guard: never both of two conflicting changes', async () => {
    await intake.apply(objs(ns('x')));
    // A second API server on the same store (another node's, in a cluster).
    const other = make(store);
    const [del, add] = await Promise.allSettled([
      intake.delete([{ kind: 'Namespace', name: 'x' }]),
      other.apply(objs(pod('late'))),
    ]);
    const outcomes = [del.status, add.status].sort();
    assert.deepEqual(outcomes, ['fulfilled', 'rejected'], 'exactly one of them wins');
    const podThere = (await stored('Pod', 'late', 'x')) !== undefined;
    const nsThere = (await stored('Namespace', 'x')) !== undefined;
    assert.equal(podThere, nsThere, 'no pod in a deleted namespace');
  });
});

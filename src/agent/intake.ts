// The API's intake: the one way desired state changes. An apply (or delete) is validated as a
// whole — every object by its kind, then against each other and what is stored (namespaces exist,
// pods fit their node's pod CIDR, names do not collide, ClusterIPs and nodePorts are free) — and
// one bad object means nothing is written, with errors naming file, object and field. Pods without
// spec.nodeName are placed on a node (the least loaded). The changes are written in one Store
// transaction, conditioned on the intake guard key so concurrent API writers (one per node, later)
// serialise; the answer comes once every node owning a change has reconciled that revision, so an
// applied pod is running and enforced when `weir apply` returns.
import { randomUUID } from 'node:crypto';
import type { Logger as Pino } from 'pino';
import {
  attachmentKind,
  nsNameLabel,
  type CniAttachment,
  type DesiredState,
  type DesiredView,
} from '../cluster/desired.js';
import type { Informer, InformerChange } from '../cluster/informer.js';
import {
  desiredKey,
  endpointConfigKey,
  endpointConfigKind,
  intakeGuardKey,
  nodesPrefix,
  podStatusKey,
  reconciledPrefix,
  type EndpointConfig,
  type ObjectRef,
} from '../cluster/keys.js';
import { lookupKind, namespacedKind } from '../cluster/kinds.js';
import { chooseNode } from '../cluster/schedule.js';
import {
  refName,
  resultName,
  type ChangeResult,
  type DesiredObject,
  type NamespaceInfo,
  type NodeRecord,
  type PodInfo,
  type PodStatus,
  type ReconciledRecord,
} from '../cluster/objects.js';
import {
  podByRuntime,
  podRunsWorkload,
  runtimeAnnotation,
  workloadAnnotation,
  type Pod,
} from '../k8s/core.js';
import { namespaceProblems } from '../k8s/namespaces.js';
import { parseCidr4, podNetns, podVeth, size4 } from '../lab/index.js';
import { assignAddresses } from '../gateway/world.js';
import { ValidationError, WeirError } from '../shared/errors.js';
import type { JsonObject, Store, StoreOp } from '../store/index.js';

export interface IntakeDeps {
  store: Store;
  /** The lab (cluster) name: pods' netns names embed it. */
  lab: string;
  desired: Informer;
  /** The typed desired state the informer holds. */
  view: DesiredView;
  /** weir/state/…: nodes, reconciled revisions, pod statuses. */
  state: Informer;
  /** Fills in what the API allocates for Services (clusterIPs, nodePorts), validating them. */
  allocateServices: (stored: DesiredObject[]) => (o: DesiredObject) => DesiredObject;
  log: Pino;
  /**
   * How long an apply waits for the nodes to reconcile: this, plus 2 s for each pod it creates or
   * changes (creating hundreds of pods takes minutes on a busy machine). Default 120 s.
   */
  reconcileTimeoutMs?: number;
}

export interface DeleteRequest extends ObjectRef {
  apiVersion?: string;
  file?: string;
}

interface Plan {
  results: ChangeResult[];
  ops: StoreOp[];
  /** Nodes that must reconcile the write; undefined = every node. */
  nodes: Set<string> | undefined;
  /** Pods written ("ns/name"), whose statuses tell whether they run. */
  pods: { key: string; file?: string }[];
  /** Every object of the request as it would be stored (validated, placed), unchanged ones too. */
  objects: DesiredObject[];
}

const maxAttempts = 5;

export class Intake {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly d: IntakeDeps) {}

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** The registered nodes and their records. */
  nodes(): Map<string, NodeRecord> {
    return new Map(this.d.state.values<NodeRecord>(nodesPrefix).map((n) => [n.value.name, n.value]));
  }

  /**
   * The registered nodes with what they reconciled: Ready when the node's agent holds its lease
   * (its record exists) and its last pass put the desired state in force.
   */
  nodeStatuses(): (NodeRecord & {
    status: 'Ready' | 'NotReady';
    reconciledRevision?: number;
    error?: string;
  })[] {
    const reconciled = new Map(
      this.d.state
        .values<ReconciledRecord & { error?: string }>(reconciledPrefix)
        .map((r) => [r.value.node, r.value]),
    );
    return [...this.nodes().values()]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((n) => {
        const r = reconciled.get(n.name);
        return {
          ...n,
          status: r && !r.error ? ('Ready' as const) : ('NotReady' as const),
          ...(r ? { reconciledRevision: r.revision } : {}),
          ...(r?.error ? { error: r.error } : {}),
        };
      });
  }

  apply(objects: DesiredObject[]): Promise<ChangeResult[]> {
    return this.serial(() => this.write((state) => this.planApply(objects, state)));
  }

  delete(refs: DeleteRequest[], opts: { ignoreNotFound?: boolean } = {}): Promise<ChangeResult[]> {
    return this.serial(() =>
      this.write((state) => this.planDelete(refs, state, opts.ignoreNotFound === true)),
    );
  }

  /**
   * A dry run of an apply: validated exactly as apply() validates (one bad object: the same
   * ValidationError, nothing returned), nothing written. The objects as they would be stored.
   */
  dryRunApply(objects: DesiredObject[]): DesiredObject[] {
    return this.planApply(objects, this.d.view.state).objects;
  }

  /** A dry run of a delete: validated as delete() validates; the stored objects it would remove. */
  dryRunDelete(refs: DeleteRequest[], opts: { ignoreNotFound?: boolean } = {}): DesiredObject[] {
    const p = this.planDelete(refs, this.d.view.state, opts.ignoreNotFound === true);
    const current = new Map(this.d.desired.values<DesiredObject>().map((i) => [i.key, i.value]));
    return p.ops.flatMap((op) => {
      const o = current.get(op.key);
      return o && o.kind !== endpointConfigKind ? [o] : [];
    });
  }

  /**
   * `weir endpoint config ns/pod Option=Value`: the pod must be desired; its endpoint options are
   * written to the Store (endpointConfigKey) and the answer comes once its node has reconciled them.
   */
  configureEndpoint(namespace: string, pod: string, options: Omit<EndpointConfig, 'namespace' | 'pod'>) {
    return this.serial(() =>
      this.write((state) => {
        const p = state.pods.get(`${namespace}/${pod}`);
        if (!p)
          throw new WeirError(
            'ERR_LAB_NOT_FOUND',
            `pod ${namespace}/${pod} does not exist in lab ${this.d.lab}`,
            {
              location: { object: `endpoint ${namespace}/${pod}`, field: 'endpoint' },
            },
          );
        const key = endpointConfigKey(namespace, pod);
        const old = this.d.desired.items.get(key);
        const value: EndpointConfig = {
          ...(old?.value as EndpointConfig | undefined),
          ...options,
          namespace,
          pod,
        };
        const same = old !== undefined && JSON.stringify(old.value) === JSON.stringify(value);
        return {
          results: [{ object: `endpoint/${pod}`, namespace, action: same ? 'unchanged' : 'configured' }],
          ops: same
            ? []
            : [{ op: 'put', key, value: value as unknown as JsonObject, ifRevision: old?.modRevision ?? 0 }],
          nodes: new Set([p.node]),
          pods: [],
          objects: [],
        };
      }),
    );
  }

  /**
   * Stores a runtime's attachment (weir-cni ADD) for its node and waits until the node has
   * reconciled it; the pod's status then tells how it went. `check` refuses it against the
   * desired state (e.g. a lab pod of that name).
   */
  attach(
    ref: { namespace: string; name: string },
    att: CniAttachment,
    check: (state: DesiredState) => void,
  ): Promise<void> {
    return this.serial(async () => {
      await this.write((state) => {
        check(state);
        const key = desiredKey({ kind: attachmentKind, ...ref });
        const old = this.d.desired.items.get(key);
        const value: DesiredObject = {
          apiVersion: 'weir.dev/v1',
          kind: attachmentKind,
          namespace: ref.namespace,
          name: ref.name,
          object: att as unknown as JsonObject,
        };
        return {
          results: [],
          ops: [{ op: 'put', key, value: value as unknown as JsonObject, ifRevision: old?.modRevision ?? 0 }],
          nodes: new Set([att.node]),
          pods: [{ key: `${ref.namespace}/${ref.name}`, file: '(weir-cni)' }],
          objects: [],
        };
      });
    });
  }

  /**
   * Removes a runtime's attachment (weir-cni DEL; GC) unless it is another container's (a DEL for
   * a container the pod no longer has must not remove its successor). Returns whether it removed one.
   */
  detach(ref: { namespace: string; name: string }, containerId?: string): Promise<boolean> {
    return this.serial(async () => {
      let removed = false;
      await this.write(() => {
        const key = desiredKey({ kind: attachmentKind, ...ref });
        const old = this.d.desired.items.get(key);
        const att = old?.value as DesiredObject | undefined;
        const cur = att?.object as CniAttachment | undefined;
        removed = !!old && (!containerId || cur?.containerId === containerId);
        return {
          results: [],
          ops: removed && old ? [{ op: 'delete', key, ifRevision: old.modRevision }] : [],
          nodes: new Set([cur?.node ?? '']),
          pods: [],
          objects: [],
        };
      });
      return removed;
    });
  }

  /** Plans against the current desired state, writes the plan if the state did not move meanwhile, waits. */
  private async write(plan: (state: DesiredState) => Plan): Promise<ChangeResult[]> {
    const { store, desired } = this.d;
    for (let attempt = 1; ; attempt++) {
      const guard = await store.get(intakeGuardKey);
      // Every earlier intake write is in the cache before we validate against it.
      await desired.waitRevision(guard?.modRevision ?? 0);
      const p = plan(this.d.view.state);
      if (p.ops.length === 0) return p.results;
      const r = await store.txn([
        ...p.ops,
        {
          op: 'put',
          key: intakeGuardKey,
          value: { at: new Date().toISOString() },
          ifRevision: guard?.modRevision ?? 0,
        },
      ]);
      if (!r.ok) {
        if (attempt < maxAttempts) continue;
        throw new WeirError(
          'ERR_API_CONFLICT',
          `the desired state kept changing during ${maxAttempts} attempts; nothing was applied, try again`,
        );
      }
      await desired.waitRevision(r.revision);
      await this.waitReconciled(r.revision, p.nodes, p.pods.length);
      this.checkPods(p.pods, r.revision);
      return p.results;
    }
  }

  private planApply(objects: DesiredObject[], state: DesiredState): Plan {
    const problems: WeirError[] = [];
    const nodes = this.nodes();
    const current = new Map(this.d.desired.values<DesiredObject>().map((i) => [i.key, i]));
    const stored = [...current.values()].map((i) => i.value);
    const allocate = this.d.allocateServices(stored);
    const keyed = new Map<string, DesiredObject>();

    // Every object by its kind.
    for (const given of objects) {
      const loc = { file: given.file ?? '(request)', object: refName(given) };
      try {
        const o = this.checkObject(given, loc);
        const key = desiredKey(o);
        if (keyed.has(key))
          throw new WeirError('ERR_K8S_DUPLICATE', 'defined twice in this apply', {
            location: { ...loc, field: 'metadata.name' },
          });
        keyed.set(key, o.kind === 'Service' ? allocate(o) : o);
      } catch (err) {
        problems.push(...asProblems(err));
      }
    }

    // As the Kubernetes API: a namespaced object needs its namespace, stored or in this apply.
    problems.push(
      ...namespaceProblems(
        [...keyed.values()].map((o) => ({
          kind: o.kind,
          name: o.name,
          ...(o.namespace ? { namespace: o.namespace } : {}),
          ...(o.file ? { file: o.file } : {}),
        })),
        state.namespaces.keys(),
      ),
    );

    // Pods against each other and what is stored: workload annotation, node, names, room.
    const onNode = new Map<string, number>();
    const names = new Map<string, string>();
    const hasPods = [...keyed.values()].some((o) => o.kind === 'Pod');
    for (const p of hasPods ? state.pods.values() : []) {
      onNode.set(p.node, (onNode.get(p.node) ?? 0) + 1);
      for (const n of podNames(this.d.lab, p.node, p.namespace, p.name))
        names.set(n, `${p.namespace}/${p.name}`);
    }
    const fresh = new Map<string, number>();
    for (const [key, o] of keyed) {
      if (o.kind !== 'Pod') continue;
      const loc = { file: o.file ?? '(request)', object: refName(o) };
      const ns = o.namespace ?? 'default';
      const podKey = `${ns}/${o.name}`;
      const pod = o.object as Pod & { spec: { nodeName?: string } };
      const old = state.pods.get(podKey);
      if (old && old.noWorkload === podRunsWorkload(pod))
        problems.push(
          new WeirError(
            'ERR_LAB_WORKLOAD_IMMUTABLE',
            `annotation ${workloadAnnotation} cannot change on an existing pod (delete and re-create it)`,
            { location: { ...loc, field: `metadata.annotations["${workloadAnnotation}"]` } },
          ),
        );
      if (old && !!old.byRuntime !== podByRuntime(pod))
        problems.push(
          new WeirError(
            'ERR_LAB_RUNTIME_IMMUTABLE',
            `annotation ${runtimeAnnotation} cannot change on an existing pod (delete and re-create it)`,
            { location: { ...loc, field: `metadata.annotations["${runtimeAnnotation}"]` } },
          ),
        );
      const given = pod.spec.nodeName;
      if (old && given && given !== old.node) {
        problems.push(
          new WeirError('ERR_API_NODE_IMMUTABLE', `the pod runs on node ${old.node}; it cannot move`, {
            location: { ...loc, field: 'spec.nodeName' },
          }),
        );
        continue;
      }
      if (given && !nodes.has(given)) {
        problems.push(
          new WeirError(
            'ERR_API_NODE_UNKNOWN',
            `no node '${given}' (nodes: ${[...nodes.keys()].join(', ') || 'none'})`,
            {
              location: { ...loc, field: 'spec.nodeName' },
            },
          ),
        );
        continue;
      }
      const node = given ?? old?.node ?? chooseNode([...nodes.keys()], onNode);
      if (!node) {
        problems.push(
          new WeirError('ERR_API_NO_NODE', 'no node is registered to run pods (is the agent up?)', {
            location: loc,
          }),
        );
        continue;
      }
      if (!old) {
        if (given) onNode.set(node, (onNode.get(node) ?? 0) + 1);
        fresh.set(node, (fresh.get(node) ?? 0) + 1);
        for (const n of podNames(this.d.lab, node, ns, o.name)) {
          const other = names.get(n);
          if (other && other !== podKey)
            problems.push(
              new WeirError('ERR_LAB_NAME_COLLISION', `its lab name ${n} is already used by pod ${other}`, {
                location: { ...loc, field: 'metadata.name' },
              }),
            );
          names.set(n, podKey);
        }
      }
      if (pod.spec.nodeName !== node)
        keyed.set(key, { ...o, object: { ...pod, spec: { ...pod.spec, nodeName: node } } });
    }
    for (const [node, n] of fresh) {
      const cidr = nodes.get(node)?.podCIDR ?? '';
      const c = parseCidr4(cidr);
      const room = c ? size4(c) - 3 : 0;
      const have = (onNode.get(node) ?? 0) - n;
      if (have + n > room)
        problems.push(
          new WeirError(
            'ERR_LAB_IPAM_EXHAUSTED',
            `the pod CIDR ${cidr} of node ${node} has no room for ${n} more pods (${have} of ${room} used)`,
            { location: { file: objects.find((o) => o.kind === 'Pod')?.file } },
          ),
        );
    }
    if (problems.length > 0) throw new ValidationError(problems);

    // A Gateway gets its address from the API (like a LoadBalancer's), kept while it exists.
    const gatewayAddresses = assignGatewayAddresses(keyed, current, problems);
    if (problems.length > 0) throw new ValidationError(problems);

    const plan: Plan = { results: [], ops: [], nodes: new Set(), pods: [], objects: [...keyed.values()] };
    for (const [key, given0] of keyed) {
      const given = given0.kind === 'Gateway' ? withAddress(given0, gatewayAddresses) : given0;
      const old = current.get(key);
      // As the API server: a Pod or Namespace gets a uid and creation time when it is created,
      // and keeps them when it is changed.
      const o = identified.has(given.kind) ? withIdentity(given, old?.value) : given;
      const same = old !== undefined && JSON.stringify(old.value.object) === JSON.stringify(o.object);
      plan.results.push({
        object: resultName(o),
        ...(o.namespace ? { namespace: o.namespace } : {}),
        action: !old ? 'created' : same ? 'unchanged' : 'configured',
      });
      if (same) continue;
      plan.ops.push({
        op: 'put',
        key,
        value: o as unknown as JsonObject,
        ifRevision: old?.modRevision ?? 0,
      });
      if (o.kind === 'Pod') {
        plan.nodes?.add((o.object as { spec: { nodeName: string } }).spec.nodeName);
        plan.pods.push({ key: `${o.namespace ?? 'default'}/${o.name}`, ...(o.file ? { file: o.file } : {}) });
      } else plan.nodes = undefined;
    }
    return plan;
  }

  /** The object as stored: its kind registered, valid, its name and namespace those of its metadata. */
  private checkObject(o: DesiredObject, loc: { file: string; object: string }): DesiredObject {
    const spec = lookupKind(o.apiVersion, o.kind);
    if (!spec)
      throw new WeirError('ERR_K8S_KIND_UNKNOWN', `unknown kind ${o.kind} (apiVersion ${o.apiVersion})`, {
        location: { ...loc, field: 'kind' },
      });
    const validated = spec.validate(o.object, loc);
    const meta = (o.object as { metadata?: { name?: string; namespace?: string } }).metadata ?? {};
    const ns = spec.namespaced ? (meta.namespace ?? 'default') : undefined;
    if (meta.name !== o.name || (o.namespace ?? undefined) !== ns)
      throw new WeirError(
        'ERR_API_BAD_REQUEST',
        `the request names ${refName(o)} but the object is ${refName({ kind: o.kind, name: String(meta.name), ...(ns ? { namespace: ns } : {}) })}`,
        { location: { ...loc, field: 'metadata' } },
      );
    return {
      apiVersion: o.apiVersion,
      kind: o.kind,
      ...(ns ? { namespace: ns } : {}),
      name: o.name,
      ...(o.file ? { file: o.file } : {}),
      // Core kinds are stored with their defaults filled in (a port's protocol: TCP), as the
      // Kubernetes API server does; the other kinds as written (their validators return models).
      object: o.kind === 'Pod' || o.kind === 'Namespace' ? validated : o.object,
    };
  }

  private planDelete(refs: DeleteRequest[], state: DesiredState, ignoreNotFound: boolean): Plan {
    const problems: WeirError[] = [];
    const current = new Map(this.d.desired.values<DesiredObject>().map((i) => [i.key, i]));
    const plan: Plan = { results: [], ops: [], nodes: new Set(), pods: [], objects: [] };
    const leaving = new Set(
      refs.filter((r) => r.kind === 'Pod').map((r) => `${r.namespace ?? 'default'}/${r.name}`),
    );
    for (const r of refs) {
      const ref: ObjectRef = {
        kind: r.kind,
        name: r.name,
        ...((namespacedKind(r.kind) ?? r.namespace !== undefined)
          ? { namespace: r.namespace ?? 'default' }
          : {}),
      };
      const location = { file: r.file ?? '(request)', object: refName(ref), field: 'metadata.name' };
      const key = desiredKey(ref);
      const old = current.get(key);
      if (!old && !ignoreNotFound)
        problems.push(
          new WeirError('ERR_LAB_NOT_FOUND', `${refName(ref)} does not exist in lab ${this.d.lab}`, {
            location,
          }),
        );
      if (r.kind === 'Namespace') {
        if (r.name === 'default')
          problems.push(
            new WeirError('ERR_LAB_NAMESPACE_PROTECTED', 'the default namespace cannot be deleted', {
              location,
            }),
          );
        const left = [...state.pods.keys()].filter((k) => k.startsWith(`${r.name}/`) && !leaving.has(k));
        if (left.length > 0)
          problems.push(
            new WeirError('ERR_LAB_NAMESPACE_NOT_EMPTY', `namespace still has pods: ${left.join(', ')}`, {
              location,
            }),
          );
      }
      plan.results.push({
        object: resultName(ref),
        ...(ref.namespace ? { namespace: ref.namespace } : {}),
        action: old ? 'deleted' : 'not found',
      });
      if (!old) continue;
      plan.ops.push({ op: 'delete', key, ifRevision: old.modRevision });
      if (r.kind === 'Pod') {
        plan.nodes?.add(state.pods.get(`${ref.namespace}/${r.name}`)?.node ?? '');
        // Its endpoint options go with it (as Cilium's endpoint configuration does).
        const cfgKey = endpointConfigKey(ref.namespace ?? 'default', r.name);
        const cfg = this.d.desired.items.get(cfgKey);
        if (cfg) plan.ops.push({ op: 'delete', key: cfgKey, ifRevision: cfg.modRevision });
      } else plan.nodes = undefined;
    }
    if (problems.length > 0) throw new ValidationError(problems);
    return plan;
  }

  /** Resolves when every node in `nodes` (undefined: every registered node) reconciled `revision`. */
  private waitReconciled(revision: number, nodes: Set<string> | undefined, pods: number): Promise<void> {
    const timeoutMs = (this.d.reconcileTimeoutMs ?? 120_000) + 2000 * pods;
    return new Promise<void>((resolve, reject) => {
      let stop = () => undefined as unknown;
      const check = (_c?: InformerChange) => {
        const reconciled = new Map(
          this.d.state
            .values<ReconciledRecord & { error?: string }>(reconciledPrefix)
            .map((r) => [r.value.node, r.value]),
        );
        const want = [...(nodes ?? this.nodes().keys())].filter(Boolean);
        const behind = want.filter((n) => (reconciled.get(n)?.revision ?? 0) < revision);
        const failed = want.map((n) => reconciled.get(n)).find((r) => r && r.revision >= revision && r.error);
        if (failed) {
          finish();
          reject(
            new WeirError(
              'ERR_API_RECONCILE_FAILED',
              `node ${failed.node} failed to put revision ${revision} in force (it retries): ${failed.error}`,
            ),
          );
        } else if (behind.length === 0) {
          finish();
          resolve();
        }
        return behind;
      };
      const timer = setTimeout(() => {
        const behind = check();
        if (behind.length === 0) return;
        finish();
        reject(
          new WeirError(
            'ERR_API_RECONCILE_TIMEOUT',
            `stored, but node ${behind.join(', ')} did not reconcile revision ${revision} within ${timeoutMs / 1000} s`,
          ),
        );
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        stop();
      };
      stop = this.d.state.onChange(check);
      check();
    });
  }

  /** Pods of a write that their node could not create: the apply fails, naming each. */
  private checkPods(pods: { key: string; file?: string }[], revision: number): void {
    const problems: WeirError[] = [];
    for (const p of pods) {
      const [ns, name] = p.key.split('/') as [string, string];
      const st = this.d.state.items.get(podStatusKey(ns, name))?.value as PodStatus | undefined;
      if (!st || st.observedRevision < revision) continue;
      if (st.phase === 'Failed' || (st.phase === 'Running' && !st.ready && st.message))
        problems.push(
          new WeirError(
            'ERR_API_POD_FAILED',
            `pod could not be started on node ${st.node}: ${st.message ?? 'failed'}`,
            {
              location: { file: p.file ?? '(request)', object: `Pod ${p.key}` },
            },
          ),
        );
    }
    if (problems.length === 1) throw problems[0] as WeirError;
    if (problems.length > 1)
      throw new WeirError('ERR_API_POD_FAILED', problems.map((e) => e.toString()).join('\n'), {
        details: { pods: problems.map((e) => e.location.object) },
      });
  }

  /** Pods as `weir get pods` shows them: desired labels and ports with their status. */
  pods(namespace?: string): PodInfo[] {
    const state = this.d.view.state;
    const out: PodInfo[] = [];
    // A runtime's container whose Pod object does not exist (yet) is a pod all the same.
    const pods = new Map(state.pods);
    for (const [key, a] of state.attachments)
      if (!pods.has(key))
        pods.set(key, {
          namespace: a.namespace,
          name: a.name,
          containers: [],
          node: a.node,
          labels: {},
          ports: [],
          noWorkload: true,
          terminating: false,
          byRuntime: true,
          revision: a.revision,
        });
    for (const [key, p] of pods) {
      if (namespace !== undefined && p.namespace !== namespace) continue;
      const [ns, name] = key.split('/') as [string, string];
      const st = this.d.state.items.get(podStatusKey(ns, name))?.value as PodStatus | undefined;
      out.push({
        namespace: p.namespace,
        name: p.name,
        labels: p.labels,
        ports: p.ports,
        node: p.node,
        phase: st?.phase ?? 'Pending',
        ...(st?.message ? { message: st.message } : {}),
        ip: st?.ip ?? '',
        ...(st?.ip6 ? { ip6: st.ip6 } : {}),
        netns: st?.netns ?? '',
        hostIfname: st?.hostIfname ?? '',
        hostIfindex: st?.hostIfindex ?? 0,
        cgroupPath: st?.cgroupPath ?? '',
        ...(p.noWorkload ? { noWorkload: true as const } : {}),
        ...(p.terminating ? { terminating: true as const } : {}),
        ...(p.byRuntime ? { runtime: 'cni' as const } : {}),
        ...(st?.containerId ? { containerId: st.containerId } : {}),
        ready: st?.phase === 'Running' && st.ready,
        ...(p.uid ? { uid: p.uid } : {}),
        ...(p.createdAt ? { createdAt: p.createdAt } : {}),
        ...(p.annotations ? { annotations: p.annotations } : {}),
        containers: p.containers,
      });
    }
    return out.sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
  }

  /** The stored objects of the kinds `filter` accepts. */
  objects(filter: (kind: string) => boolean): DesiredObject[] {
    return this.d.desired
      .values<DesiredObject>()
      .map((i) => i.value)
      .filter((o) => filter(o.kind));
  }

  namespaces(): NamespaceInfo[] {
    const state = this.d.view.state;
    return [...state.namespaces.values()].sort((a, b) => a.name.localeCompare(b.name));
  }
}

/**
 * Kinds that get a uid and creation time from the API: Pods and Namespaces as Kubernetes does, and
 * the Gateway API kinds, whose age decides between routes of equal precedence.
 */
const identified = new Set([
  'Pod',
  'Namespace',
  'Gateway',
  'GatewayClass',
  'HTTPRoute',
  'GRPCRoute',
  'ReferenceGrant',
]);

const addressOf = (o: DesiredObject | undefined) =>
  (o?.object as { status?: { addresses?: { value?: string }[] } } | undefined)?.status?.addresses?.[0]?.value;

/** Gateway "ns/name" → its address: the stored one, or the lowest free one of the gateway range. */
function assignGatewayAddresses(
  keyed: Map<string, DesiredObject>,
  current: Map<string, { value: DesiredObject }>,
  problems: WeirError[],
): Map<string, string> {
  const have = new Map<string, string>();
  const all: string[] = [];
  for (const { value } of current.values()) {
    if (value.kind !== 'Gateway') continue;
    const k = `${value.namespace}/${value.name}`;
    all.push(k);
    const a = addressOf(value);
    if (a) have.set(k, a);
  }
  for (const o of keyed.values()) if (o.kind === 'Gateway') all.push(`${o.namespace}/${o.name}`);
  const out = assignAddresses([...new Set(all)], have);
  for (const o of keyed.values())
    if (o.kind === 'Gateway' && !out.has(`${o.namespace}/${o.name}`))
      problems.push(
        new WeirError(
          'ERR_GATEWAY_ADDRESS_EXHAUSTED',
          'no free address in 198.51.100.0/24 for this Gateway',
          {
            location: { file: o.file ?? '(request)', object: refName(o) },
          },
        ),
      );
  return out;
}

/** The Gateway with status.addresses as the API assigned them. */
function withAddress(o: DesiredObject, addresses: Map<string, string>): DesiredObject {
  const a = addresses.get(`${o.namespace}/${o.name}`);
  if (!a) return o;
  const obj = o.object as Record<string, unknown>;
  return { ...o, object: { ...obj, status: { addresses: [{ type: 'IPAddress', value: a }] } } };
}

/** `o` with metadata.uid and creationTimestamp: those of `old`, or new ones. */
function withIdentity(o: DesiredObject, old: DesiredObject | undefined): DesiredObject {
  const meta = (x: DesiredObject | undefined) =>
    (x?.object as { metadata?: { uid?: string; creationTimestamp?: string } } | undefined)?.metadata;
  const was = meta(old);
  const obj = o.object as { metadata: Record<string, unknown> };
  return {
    ...o,
    object: {
      ...obj,
      metadata: {
        ...obj.metadata,
        uid: was?.uid ?? randomUUID(),
        creationTimestamp: was?.creationTimestamp ?? new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
      },
    },
  };
}

/** The names a pod takes on its node (netns, host veth): two pods must not share one. */
function podNames(lab: string, node: string, ns: string, name: string): string[] {
  return [podNetns(lab, node, ns, name), `${node}/${podVeth(ns, name)}`];
}

function asProblems(err: unknown): WeirError[] {
  if (err instanceof ValidationError) return err.problems;
  if (err instanceof WeirError) return [err];
  throw err;
}

export { nsNameLabel };

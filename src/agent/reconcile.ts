// The node's reconciler: it watches the desired state in the Store and makes the node hold it.
// Each pass compares the desired pods scheduled on this node with the pods it runs, and
//
//   1. removes pods no longer desired here (workload, cgroup, netns; endpoint; status),
//   2. updates changed pods in place (labels: policy only; ports: the workload restarts),
//   3. creates new pods through the lab's pod driver with addresses from the node's pod CIDR,
//      attaching the datapath while the host veth is still down (fail closed),
//   4. regenerates policy and services for the whole node,
//   5. publishes the pods' statuses and the desired revision it has reconciled, in one write.
//
// Passes never overlap; a change arriving during a pass runs another pass after it. A restarted
// agent starts from the statuses it published and what the kernel holds: pods that are still
// right are only re-attached (programs replaced atomically, maps kept), so nothing is rewritten.
import type { Logger as Pino } from 'pino';
import type { DesiredAttachment, DesiredPod, DesiredState, DesiredView } from '../cluster/desired.js';
import type { Informer } from '../cluster/informer.js';
import {
  desiredKindPrefix,
  endpointConfigKind,
  nodeKey,
  nodesPrefix,
  podStatusKey,
  podStatusPrefix,
  reconciledKey,
  refOfDesiredKey,
  type EndpointConfig,
} from '../cluster/keys.js';
import type { NodeRecord, PodStatus, ReconciledRecord } from '../cluster/objects.js';
import {
  attachContainer,
  host4,
  host6,
  parseCidr4,
  parseCidr6,
  size4,
  type NodeInfo,
  type PodDriver,
} from '../lab/index.js';
import type { JsonObject, Lease, Store, StoreOp } from '../store/index.js';
import type { Agent, AgentPod } from './agent.js';
import { StepTimes } from '../shared/step-times.js';

/** Pods created together (one `ip -batch` for their namespaces, one for their veths, ...). */
const createBatch = 64;
/** Batches under way at once (see reconcilePods). */
const createConcurrency = 3;
const destroyConcurrency = 4;
const retryMs = 5000;
/** How often the pods' workloads are checked (a dead one is restarted, like a crashed container). */
const verifyMs = 30_000;

/**
 * A pod this node should run: a lab pod, or a runtime's container (weir-cni) with its attachment,
 * labelled by its Pod object (annotated weir.dev/runtime: cni) or, until that exists, of Cilium's
 * reserved:init identity.
 */
type WantedPod = DesiredPod & { attachment?: DesiredAttachment; init?: true };

interface PodRecord {
  status: PodStatus;
  /** Desired fields as last put in force. */
  labels: Record<string, string>;
  ports: DesiredPod['ports'];
  terminating: boolean;
}

export interface ReconcilerDeps {
  store: Store;
  node: NodeInfo;
  driver: PodDriver;
  agent: Agent;
  desired: Informer;
  /** The typed desired state the informer holds. */
  view: DesiredView;
  /** weir/state/… (other nodes' pod statuses, for service backends). */
  state: Informer;
  /** The node's lease now (a lost one is replaced: see leaseChanged). */
  lease: () => Lease;
  log: Pino;
}

export class Reconciler {
  private readonly records = new Map<string, PodRecord>();
  /** Where the running pass's time goes (logged when it created pods). */
  private times: StepTimes | undefined;
  private created = 0;
  /** Status JSON as last published, per pod key, and the status object it was made from. */
  private readonly published = new Map<string, string>();
  private readonly publishedRef = new Map<string, PodStatus>();
  private lastReconciled: string | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private first = true;
  private retryTimer: NodeJS.Timeout | undefined;
  private verifyTimer: NodeJS.Timeout | undefined;
  private verifyNext = false;
  /** The desired revision the last completed pass put in force. */
  private passRevision = -1;
  private stopped = false;
  /**
   * A change since the last pass may alter what this node runs or enforces. Changes that cannot
   * (another node's pod before it runs, a status that only moved between phases this node
   * ignores) make a light pass: the reconciled revision advances, nothing is recomputed.
   */
  private dirty = true;
  /** Per pod of another node: what this node's view of it depends on ('' = not in the view). */
  private readonly remoteSeen = new Map<string, string>();
  /** Passes that recomputed (full) and that only advanced the reconciled revision (light). */
  fullPasses = 0;
  lightPasses = 0;
  /** The last pass's error (undefined after a good pass). */
  lastError: string | undefined;
  passes = 0;

  constructor(private readonly d: ReconcilerDeps) {}

  /** Loads the statuses this node published before (a restart) and runs the first pass. */
  async start(): Promise<void> {
    const { items } = await this.d.store.list(podStatusPrefix);
    for (const kv of items) {
      const st = kv.value as unknown as PodStatus;
      if (st.node !== this.d.node.name) continue;
      const key = `${st.namespace}/${st.name}`;
      this.published.set(key, JSON.stringify(st));
      this.records.set(key, { status: st, labels: {}, ports: [], terminating: false });
    }
    const rec = await this.d.store.get(reconciledKey(this.d.node.name));
    // Written again under this run's lease by the first pass.
    this.lastReconciled = rec && rec.lease === this.d.lease().id ? JSON.stringify(rec.value) : undefined;
    this.seedRemote();
    this.d.desired.onChange((c) => {
      if (c.resync || c.events.some((e) => this.desiredMatters(e.key))) this.dirty = true;
      queueMicrotask(() => void this.kick());
    });
    // Other nodes' pods and nodes (a cluster): their addresses and identities go in this node's
    // ipcache, so a change there is a pass here. This node's own writes are not.
    this.d.state.onChange((c) => {
      if (c.resync) this.seedRemote();
      // Every event is looked at: each updates what this node saw of that pod.
      const remote = c.events.map((e) => this.isRemote(e)).some(Boolean);
      if (c.resync || remote) {
        this.dirty = true;
        queueMicrotask(() => void this.kick());
      }
    });
    await this.kick();
    this.verifyTimer = setInterval(() => {
      this.verifyNext = true;
      void this.kick();
    }, verifyMs);
    this.verifyTimer.unref();
  }

  /**
   * The node's lease was replaced (the old one ran out, taking its keys): the next pass writes the
   * reconciled revision again, and the identity references (regeneration syncs them from the cache).
   */
  leaseChanged(): Promise<void> {
    this.lastReconciled = undefined;
    this.dirty = true;
    return this.kick();
  }

  /** What this node sees of the other nodes' pods, from the cache (start, and after a relist). */
  private seedRemote(): void {
    this.remoteSeen.clear();
    for (const { key } of this.d.state.values(podStatusPrefix)) {
      const kv = this.d.state.items.get(key);
      if (kv) this.isRemote({ type: 'put', key, value: kv.value });
    }
  }

  /**
   * Whether a change of weir/state/ changes what this node sees of the other nodes: their node
   * records, or their pods as regenerate() reads them (running pods only: a pod of another node
   * that is Pending, Failed or gone is not in this node's view, so its moves between those are not).
   */
  private isRemote(e: { type: 'put' | 'delete'; key: string; value?: unknown }): boolean {
    if (e.key.startsWith(nodesPrefix)) return e.key !== nodeKey(this.d.node.name);
    if (!e.key.startsWith(podStatusPrefix)) return false;
    const key = e.key.slice(podStatusPrefix.length);
    const st = e.type === 'put' ? (e.value as PodStatus | undefined) : undefined;
    if (st?.node === this.d.node.name || (!st && this.records.has(key))) return false;
    const seen =
      st?.phase === 'Running'
        ? JSON.stringify([st.node, st.ip, st.ip6, st.ready, st.hostIfname, st.hostIfindex, st.cgroupPath])
        : '';
    if ((this.remoteSeen.get(key) ?? '') === seen) return false;
    if (seen) this.remoteSeen.set(key, seen);
    else this.remoteSeen.delete(key);
    return true;
  }

  /**
   * Whether a change of a desired object can change this node: anything but a Pod of another
   * node that this node does not see yet (not running there). A Pod runs where the view schedules
   * it (the view takes the change before this listener).
   */
  private desiredMatters(key: string): boolean {
    const ref = refOfDesiredKey(key);
    if (ref?.kind !== 'Pod') return true;
    const podKey = `${ref.namespace ?? 'default'}/${ref.name}`;
    if (this.records.has(podKey) || this.remoteSeen.has(podKey)) return true;
    const p = this.d.view.state.pods.get(podKey);
    return p !== undefined && (p.node === this.d.node.name || p.byRuntime === true);
  }

  /** Runs a pass now, or after the running one. Resolves when a pass that saw this call ends. */
  kick(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.pass();
      } while (this.again && !this.stopped);
      this.running = undefined;
    })();
    return this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.verifyTimer);
    await this.running;
  }

  private async pass(): Promise<void> {
    const want = this.d.view.state;
    const log = this.d.log;
    const verify = this.verifyNext;
    this.verifyNext = false;
    // A periodic check with nothing new to put in force: only the workloads are looked at.
    if (verify && want.revision === this.passRevision && !this.lastError && !(await this.restartDead()))
      return;
    // Nothing this node runs or enforces changed: only the reconciled revision moves.
    if (!this.dirty && !this.first && !verify && !this.lastError) {
      this.lightPasses++;
      this.passRevision = want.revision;
      await this.publish(want.revision, undefined);
      return;
    }
    this.dirty = false;
    this.fullPasses++;
    let error: string | undefined;
    const times = new StepTimes();
    this.times = times;
    const created = this.created;
    try {
      await this.reconcilePods(want);
      times.mark('pods');
      await this.regenerate(want);
      times.mark('regenerate');
      await this.d.agent.persist();
      times.mark('persist');
      this.lastError = undefined;
    } catch (err) {
      error = (err as Error).message;
      this.lastError = error;
      log.error({ err, revision: want.revision }, 'reconcile failed; retrying');
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => void this.kick(), retryMs);
      this.retryTimer.unref();
    }
    this.passes++;
    this.first = false;
    this.passRevision = want.revision;
    await this.publish(want.revision, error);
    times.mark('publish');
    if (this.created > created)
      log.info(
        { pods: this.created - created, ms: times },
        'pass with new pods (ms per step: wall, cpu, children cpu)',
      );
  }

  /** Restarts the workloads that died; returns how many. */
  private async restartDead(): Promise<number> {
    let n = 0;
    for (const [key, r] of this.records) {
      if (r.status.phase !== 'Running' || r.status.noWorkload) continue;
      if (await this.d.driver.ready(r.status, r.ports)) continue;
      this.d.log.warn({ pod: key }, 'pod workload died; restarting it');
      await this.runWorkload(r, key, r.ports);
      n++;
    }
    return n;
  }

  /**
   * Makes the pod's workload run with these ports (started, restarted, or left as it is); a
   * workload that does not come up leaves the pod not ready with the reason, and the pass goes on.
   */
  private async runWorkload(r: PodRecord, key: string, ports: DesiredPod['ports']): Promise<void> {
    try {
      await this.d.driver.ensureWorkload(r.status, ports);
      r.status = { ...r.status, ready: true, message: undefined };
    } catch (err) {
      this.d.log.error({ pod: key, err }, 'pod workload did not start');
      r.status = { ...r.status, ready: false, message: (err as Error).message };
    }
  }

  private async reconcilePods(want: DesiredState): Promise<void> {
    const { driver, agent, node, log } = this.d;
    const mine = this.wanted(want);

    // 1. Pods no longer desired here.
    const gone = [...this.records.keys()].filter((k) => !mine.has(k));
    await pool(gone, destroyConcurrency, async (key) => {
      const [namespace, name] = key.split('/') as [string, string];
      log.info({ pod: key }, 'pod removed');
      await driver.destroy(namespace, name);
      this.records.delete(key);
    });
    agent.prune(new Set(this.records.keys()));

    // 2. Pods that exist: verified against the kernel on the first pass, updated when changed.
    const create: WantedPod[] = [];
    const kernel = this.first
      ? new Map((await driver.list()).map((x) => [`${x.namespace}/${x.name}`, x]))
      : undefined;
    // Pods the kernel holds that nobody wants (a crash between creating and recording one, or a
    // lab from before the Store): removed.
    for (const key of kernel?.keys() ?? []) {
      if (mine.has(key) || this.records.has(key)) continue;
      const [namespace, name] = key.split('/') as [string, string];
      log.warn({ pod: key }, 'removing a pod nobody wants');
      await driver.destroy(namespace, name);
    }
    for (const [key, p] of mine) {
      const r = this.records.get(key);
      if (
        !r ||
        r.status.phase === 'Pending' ||
        (r.status.phase === 'Failed' && r.status.observedRevision !== p.revision)
      ) {
        create.push(p);
        continue;
      }
      if (p.attachment && p.attachment.containerId !== r.status.containerId) {
        // A new sandbox of the pod (the runtime's DEL of the old one never came): the old veth and
        // endpoint go first, so the new container gets a fresh endpoint attached to its own veth.
        log.info({ pod: key, container: p.attachment.containerId }, 'the runtime attached another container');
        await driver.destroy(p.namespace, p.name);
        this.records.delete(key);
        agent.prune(new Set(this.records.keys()));
        create.push(p);
        continue;
      }
      if (r.status.phase === 'Failed') continue; // failed at this revision: retried when it changes
      if (kernel) {
        const live = kernel.get(key);
        if (!live || live.ip !== r.status.ip || live.hostIfindex !== r.status.hostIfindex) {
          log.warn({ pod: key }, 'pod lost its netns or veth; creating it again');
          create.push(p);
          continue;
        }
        // A runtime's container: its netns is the runtime's (not the lab's name), its MAC recorded.
        agent.attach(
          r.status.runtime === 'cni'
            ? { ...live, netns: r.status.netns, ...(r.status.mac ? { mac: r.status.mac } : {}) }
            : live,
        );
        if (!p.noWorkload) await this.runWorkload(r, key, p.ports);
        else r.status = { ...r.status, ready: true };
      } else if (r.status.observedRevision !== p.revision && !p.noWorkload) {
        if (JSON.stringify(r.ports) !== JSON.stringify(p.ports)) {
          log.info({ pod: key }, 'pod ports changed, restarting its workload');
          await this.runWorkload(r, key, p.ports);
        }
      }
      r.labels = p.labels;
      r.ports = p.ports;
      r.terminating = p.terminating;
      if (r.status.observedRevision !== p.revision) r.status = { ...r.status, observedRevision: p.revision };
    }

    // 3. New pods: addresses first (published as Pending), then the pods, a few at a time.
    if (create.length === 0) return;
    const addrs = this.allocate(create);
    const pending: StoreOp[] = [];
    for (const p of create) {
      const key = `${p.namespace}/${p.name}`;
      const addr = addrs.get(key);
      const names = driver.names(p.namespace, p.name);
      const status: PodStatus = {
        namespace: p.namespace,
        name: p.name,
        node: node.name,
        phase: addr ? 'Pending' : 'Failed',
        ...(addr ? {} : { message: `the pod CIDR ${node.podCIDR} has no free address` }),
        ip: addr?.ip ?? '',
        ...(addr?.ip6 ? { ip6: addr.ip6 } : {}),
        ...names,
        hostIfindex: 0,
        ready: false,
        ...(p.noWorkload ? { noWorkload: true as const } : {}),
        ...(p.attachment
          ? {
              netns: p.attachment.netns,
              cgroupPath: '',
              runtime: 'cni' as const,
              containerId: p.attachment.containerId,
            }
          : {}),
        observedRevision: p.revision,
      };
      this.records.set(key, { status, labels: p.labels, ports: p.ports, terminating: p.terminating });
      const op = this.statusOp(key, status);
      if (op) pending.push(op);
    }
    const ops = pending;
    // Written before anything is created: a crash from here on leaves the addresses allocated.
    const times = this.times ?? new StepTimes();
    times.mark('pods: removed, updated');
    if (ops.length > 0) await this.d.store.txn(ops);
    times.mark('pods: pending statuses');
    const started: { key: string; pod: Awaited<ReturnType<PodDriver['create']>> }[] = [];
    const todo = create.filter(
      (p) => this.records.get(`${p.namespace}/${p.name}`)?.status.phase === 'Pending',
    );
    // Containers a runtime made (weir-cni): each attached into the runtime's netns on its own.
    for (const p of todo) {
      const att = p.attachment;
      if (!att) continue;
      const key = `${p.namespace}/${p.name}`;
      const r = this.records.get(key) as PodRecord;
      log.info({ pod: key, ip: r.status.ip }, 'attaching container');
      try {
        const pod = await attachContainer(
          driver,
          {
            namespace: p.namespace,
            name: p.name,
            ip: r.status.ip,
            ...(r.status.ip6 ? { ip6: r.status.ip6 } : {}),
            netnsPath: att.netnsPath,
            netnsInode: att.netnsInode,
            ifname: att.ifname,
          },
          (plumbed) => void agent.attach(plumbed),
        );
        if ('mac' in pod) r.status = { ...r.status, mac: pod.mac };
        r.status = { ...r.status, hostIfindex: pod.hostIfindex, phase: 'Running', ready: p.noWorkload };
        started.push({ key, pod });
      } catch (err) {
        log.error({ pod: key, err }, 'pod creation failed');
        r.status = { ...r.status, phase: 'Failed', message: (err as Error).message };
      }
    }
    // Lab pods in batches: the driver creates a batch's namespaces, veths and routes with a few
    // processes. Their endpoints' policy maps are made first, all at once (one RCU wait: prepare).
    // A few batches are under way at a time: while one waits for its `ip` processes or for the
    // pod host serving its workloads, another is plumbed and attached (those waits run on the
    // other CPU, in other processes).
    const labPods = todo.filter((p) => !p.attachment);
    if (labPods.length > 0)
      try {
        agent.prepare(labPods);
      } catch (err) {
        // Each attach makes its own endpoint's map then (one at a time).
        log.warn({ err }, 'preparing the endpoints of a batch failed');
      }
    times.mark('pods: policy maps');
    const chunks: WantedPod[][] = [];
    for (let b = 0; b < labPods.length; b += createBatch) chunks.push(labPods.slice(b, b + createBatch));
    await pool(chunks, createConcurrency, async (chunk) => {
      const specs = chunk.map((p) => {
        const r = this.records.get(`${p.namespace}/${p.name}`) as PodRecord;
        return {
          namespace: p.namespace,
          name: p.name,
          ip: r.status.ip,
          ...(r.status.ip6 ? { ip6: r.status.ip6 } : {}),
          ports: p.ports,
          noWorkload: p.noWorkload,
        };
      });
      log.info(
        { pods: Object.fromEntries(specs.map((s) => [`${s.namespace}/${s.name}`, s.ip])) },
        'creating pods',
      );
      const results = await driver.createMany(specs, (plumbed) => void agent.attach(plumbed));
      this.created += chunk.length;
      chunk.forEach((p, k) => {
        const key = `${p.namespace}/${p.name}`;
        const r = this.records.get(key) as PodRecord;
        const res = results[k];
        if (res && 'pod' in res) {
          r.status = { ...r.status, hostIfindex: res.pod.hostIfindex, phase: 'Running', ready: p.noWorkload };
          started.push({ key, pod: res.pod });
        } else {
          const err = res?.error ?? new Error('not created');
          log.error({ pod: key, err }, 'pod creation failed');
          r.status = { ...r.status, phase: 'Failed', message: err.message };
        }
      });
    });
    times.mark('pods: created');
    // A pod that failed after its endpoint was attached leaves no endpoint behind.
    agent.prune(new Set([...this.records].filter(([, r]) => r.status.phase === 'Running').map(([k]) => k)));
    await Promise.all(
      started.map(async ({ key, pod }) => {
        const r = this.records.get(key) as PodRecord;
        try {
          await driver.waitReady(pod);
          r.status = { ...r.status, ready: true };
        } catch (err) {
          r.status = { ...r.status, message: (err as Error).message };
        }
      }),
    );
    times.mark('pods: prune, wait ready');
  }

  /** Addresses for new pods: the same host number in the v4 and v6 pod CIDR, skipping .0 and the node's .1. */
  private allocate(pods: WantedPod[]): Map<string, { ip: string; ip6?: string }> {
    const node = this.d.node;
    const c4 = parseCidr4(node.podCIDR);
    const c6 = node.podCIDRv6 ? parseCidr6(node.podCIDRv6) : undefined;
    const out = new Map<string, { ip: string; ip6?: string }>();
    if (!c4) return out;
    const used = new Set<string>();
    const keep = new Map<string, string>();
    for (const [key, r] of this.records) {
      if (!r.status.ip) continue;
      used.add(r.status.ip);
      keep.set(key, r.status.ip);
    }
    let i = 2;
    for (const p of pods) {
      const key = `${p.namespace}/${p.name}`;
      const had = keep.get(key);
      if (had) {
        const n = ipNumber(had) - c4.base;
        out.set(key, { ip: had, ...(c6 ? { ip6: host6(c6, n) } : {}) });
        continue;
      }
      while (i < size4(c4) - 1 && used.has(host4(c4, i))) i++;
      if (i >= size4(c4) - 1) continue;
      const ip = host4(c4, i);
      used.add(ip);
      out.set(key, { ip, ...(c6 ? { ip6: host6(c6, i) } : {}) });
    }
    return out;
  }

  /** The pods this node should run: its lab pods and the runtime's containers attached here. */
  private wanted(want: DesiredState): Map<string, WantedPod> {
    const node = this.d.node.name;
    const out = new Map<string, WantedPod>();
    for (const [key, p] of want.pods) if (p.node === node && !p.byRuntime) out.set(key, p);
    for (const [key, a] of want.attachments) {
      if (a.node !== node) continue;
      const given = want.pods.get(key);
      const pod = given?.byRuntime ? given : undefined;
      out.set(key, {
        namespace: a.namespace,
        name: a.name,
        ...(pod?.uid ? { uid: pod.uid } : {}),
        containers: pod?.containers ?? [],
        node,
        labels: pod?.labels ?? {},
        ports: pod?.ports ?? [],
        noWorkload: true,
        terminating: pod?.terminating ?? false,
        byRuntime: true,
        revision: Math.max(a.revision, pod?.revision ?? 0),
        attachment: a,
        ...(pod ? {} : { init: true as const }),
      });
    }
    return out;
  }

  private async regenerate(want: DesiredState): Promise<void> {
    const { agent, node } = this.d;
    const pods: AgentPod[] = [];
    const wanted = this.wanted(want);
    for (const [key, r] of this.records) {
      if (r.status.phase !== 'Running') continue;
      const p = wanted.get(key);
      pods.push({
        namespace: r.status.namespace,
        name: r.status.name,
        labels: p?.labels ?? r.labels,
        ports: p?.ports ?? r.ports,
        node: node.name,
        ip: r.status.ip,
        ...(r.status.ip6 ? { ip6: r.status.ip6 } : {}),
        hostIfname: r.status.hostIfname,
        hostIfindex: r.status.hostIfindex,
        cgroupPath: r.status.cgroupPath,
        ready: r.status.ready,
        ...(p?.terminating ? { terminating: true as const } : {}),
        ...(r.status.noWorkload ? { noWorkload: true as const } : {}),
        ...(p?.init ? { init: true as const } : {}),
      });
    }
    // Pods of other nodes (a cluster): service backends, while their node is registered (its
    // record lives under its lease: a node that went away takes its backends out of every service).
    const registered = new Set(this.d.state.values<NodeRecord>(nodesPrefix).map((n) => n.value.name));
    for (const { value: st } of this.d.state.values<PodStatus>(podStatusPrefix)) {
      if (st.node === node.name || st.phase !== 'Running' || !registered.has(st.node)) continue;
      const p = want.pods.get(`${st.namespace}/${st.name}`);
      if (!p) continue;
      pods.push({
        namespace: st.namespace,
        name: st.name,
        labels: p.labels,
        ports: p.ports,
        node: st.node,
        ip: st.ip,
        ...(st.ip6 ? { ip6: st.ip6 } : {}),
        hostIfname: st.hostIfname,
        hostIfindex: st.hostIfindex,
        cgroupPath: st.cgroupPath,
        ready: st.ready,
        ...(p.terminating ? { terminating: true as const } : {}),
      });
    }
    await agent.syncNode();
    const endpointConfig = new Map(
      this.d.desired
        .values<EndpointConfig>(desiredKindPrefix(endpointConfigKind))
        .map((i) => [`${i.value.namespace}/${i.value.pod}`, i.value]),
    );
    const remoteNodes = this.d.state
      .values<NodeRecord>(nodesPrefix)
      .map((n) => n.value)
      .filter((n) => n.name !== node.name);
    const remoteNodeIPs = remoteNodes.flatMap((n) => [
      n.ip,
      ...(n.ip6 ? [n.ip6] : []),
      ...(n.underlayIP ? [n.underlayIP] : []),
    ]);
    agent.setView({
      namespaces: [...want.namespaces.values()],
      pods,
      objects: want.objects,
      endpointConfig,
      remoteNodeIPs,
      remoteNodes: remoteNodes.map((n) => ({
        name: n.name,
        ip: n.ip,
        ...(n.ip6 ? { ip6: n.ip6 } : {}),
        podCIDR: n.podCIDR,
        ...(n.podCIDRv6 ? { podCIDRv6: n.podCIDRv6 } : {}),
        ...(n.underlayIP ? { underlayIP: n.underlayIP } : {}),
      })),
    });
    this.times?.mark('regenerate: view, node');
    await agent.regenerate();
  }

  /** The put (or delete) of a pod's status, unless the store already holds it. */
  private statusOp(key: string, status: PodStatus | undefined): StoreOp | undefined {
    const [namespace, name] = key.split('/') as [string, string];
    if (!status) {
      this.publishedRef.delete(key);
      if (!this.published.has(key)) return undefined;
      this.published.delete(key);
      return { op: 'delete', key: podStatusKey(namespace, name) };
    }
    // Statuses are replaced, never changed in place: the same object was published already.
    if (this.publishedRef.get(key) === status) return undefined;
    const text = JSON.stringify(status);
    this.publishedRef.set(key, status);
    if (this.published.get(key) === text) return undefined;
    this.published.set(key, text);
    return { op: 'put', key: podStatusKey(namespace, name), value: status as unknown as JsonObject };
  }

  /** Pod statuses that changed and the reconciled revision, in one write. */
  private async publish(revision: number, error: string | undefined): Promise<void> {
    const ops: StoreOp[] = [];
    for (const [key, r] of this.records) {
      const op = this.statusOp(key, r.status);
      if (op) ops.push(op);
    }
    for (const key of [...this.published.keys()])
      if (!this.records.has(key)) {
        const op = this.statusOp(key, undefined);
        if (op) ops.push(op);
      }
    const rec: ReconciledRecord & { error?: string } = {
      node: this.d.node.name,
      revision,
      ...(error ? { error } : {}),
    };
    const text = JSON.stringify(rec);
    if (text !== this.lastReconciled)
      ops.push({
        op: 'put',
        key: reconciledKey(this.d.node.name),
        value: rec as unknown as JsonObject,
        lease: this.d.lease().id,
      });
    if (ops.length === 0) return;
    try {
      await this.d.store.txn(ops);
      this.lastReconciled = text;
    } catch (err) {
      // Nothing was written: forget what we thought was published, so the next pass writes it.
      this.published.clear();
      this.publishedRef.clear();
      this.lastReconciled = undefined;
      this.d.log.error({ err }, 'publishing pod statuses failed');
    }
  }

  /** The node's pods with their statuses (for the API). */
  statuses(): PodStatus[] {
    return [...this.records.values()].map((r) => r.status);
  }
}

function ipNumber(ip: string): number {
  return ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

/**
 * Runs `fn` over `items`, at most `n` at a time. A failure stops its worker from taking more items
 * and is thrown once every worker has stopped (nothing of the pass goes on behind its back).
 */
async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  const worker = async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) await fn(item);
  };
  const done = await Promise.allSettled(Array.from({ length: Math.min(n, queue.length) }, worker));
  const failed = done.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

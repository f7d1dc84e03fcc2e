// The agent's side of weir-cni (docs/cni.md): the routes the plugin calls over the agent's socket,
// as Cilium's plugin calls its agent. An ADD becomes desired state — the attachment, stored under
// weir/desired/v1/CniAttachment/<namespace>/<name> through the intake — and the node's reconciler
// creates the endpoint through the same pass as a lab pod's: an address from the node's pod CIDR
// (IPAM), the veth into the container's netns (src/lab/attachment.ts), the datapath attached while
// the host veth is down, the identity (its Pod's labels, or reserved:init until the Pod exists),
// the policy. The answer waits until that pass has put it in force. DEL removes the attachment
// (and so the endpoint, veth, ipcache entry and identity reference) the same way.
import { statSync } from 'node:fs';
import type { CniAttachment, DesiredState } from '../cluster/desired.js';
import type { Informer } from '../cluster/informer.js';
import { podStatusKey } from '../cluster/keys.js';
import type { PodStatus } from '../cluster/objects.js';
import { queryTc } from '../bpf/index.js';
import { containerAddresses, type NodeInfo } from '../lab/index.js';
import { WeirError } from '../shared/errors.js';
import type { Agent } from './agent.js';
import type { Route } from './api-server.js';
import type { Intake } from './intake.js';
import type { Reconciler } from './reconcile.js';

/** A Kubernetes object name (RFC 1123 subdomain; a namespace: a label). */
const namePattern = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const namespacePattern = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export interface CniPodRef {
  /** K8S_POD_NAMESPACE (default when the runtime passes none). */
  namespace: string;
  /** K8S_POD_NAME. */
  name: string;
  containerId: string;
}

export interface CniAddRequest extends CniPodRef {
  ifname: string;
  /** CNI_NETNS as the runtime gave it. */
  netns: string;
  /** The same namespace as the agent can open it (the plugin's open descriptor, /proc/<pid>/fd/<n>). */
  netnsPath: string;
}

/** What the plugin turns into the CNI result. */
export interface CniAddAnswer {
  namespace: string;
  name: string;
  ifname: string;
  mac: string;
  ip: string;
  ip6?: string;
  /** The node's address: the pod's gateway (its default route goes via it). */
  gateway: string;
  hostIfname: string;
  endpointId?: number;
}

export interface CniCheckRequest extends CniPodRef {
  ifname: string;
  netnsPath?: string;
  /** The addresses of prevResult, without prefix lengths. */
  ips: string[];
}

export interface CniAttachmentInfo extends CniPodRef {
  node: string;
  ifname: string;
  netns: string;
  createdAt: string;
  phase: PodStatus['phase'] | 'Pending';
  ip: string;
  ip6?: string;
  hostIfname: string;
  message?: string;
}

export interface CniDeps {
  agent: Agent;
  intake: Intake;
  reconciler: Reconciler;
  node: NodeInfo;
  /** weir/state/…: the pods' statuses. */
  state: Informer;
  desired: () => DesiredState;
}

function str(body: unknown, field: string, required = true): string {
  const v = (body as Record<string, unknown> | undefined)?.[field];
  if (v === undefined && !required) return '';
  if (typeof v !== 'string' || (required && v === ''))
    throw new WeirError('ERR_CNI_REQUEST', `weir-cni request: ${field} must be a non-empty string`, {
      location: { object: 'weir-cni request', field },
    });
  return v;
}

function podRef(body: unknown): CniPodRef {
  const namespace = str(body, 'namespace');
  const name = str(body, 'name');
  if (!namespacePattern.test(namespace))
    throw new WeirError('ERR_CNI_REQUEST', `K8S_POD_NAMESPACE '${namespace}' is not a valid namespace name`, {
      location: { object: 'CNI_ARGS', field: 'K8S_POD_NAMESPACE' },
    });
  if (!namePattern.test(name))
    throw new WeirError(
      'ERR_CNI_REQUEST',
      `K8S_POD_NAME '${name}' is not a valid pod name (lower-case letters, digits, '-' and '.')`,
      { location: { object: 'CNI_ARGS', field: 'K8S_POD_NAME' } },
    );
  return { namespace, name, containerId: str(body, 'containerId') };
}

function inodeOf(path: string): number {
  try {
    return statSync(path).ino;
  } catch (err) {
    throw new WeirError('ERR_CNI_NETNS', `the container's network namespace ${path} cannot be opened`, {
      location: { object: path, field: 'CNI_NETNS' },
      cause: err,
    });
  }
}

export class CniService {
  constructor(private readonly d: CniDeps) {}

  private status(ns: string, name: string): PodStatus | undefined {
    return this.d.state.items.get(podStatusKey(ns, name))?.value as PodStatus | undefined;
  }

  /** STATUS: ready once the node has put the desired state in force without error. */
  readiness(): { ready: boolean; message?: string } {
    const r = this.d.reconciler;
    if (r.passes === 0) return { ready: false, message: 'the agent has not reconciled yet' };
    if (r.lastError) return { ready: false, message: `the last reconcile failed: ${r.lastError}` };
    return { ready: true };
  }

  async add(body: unknown): Promise<CniAddAnswer> {
    const ref = podRef(body);
    const req: CniAddRequest = {
      ...ref,
      ifname: str(body, 'ifname'),
      netns: str(body, 'netns'),
      netnsPath: str(body, 'netnsPath'),
    };
    const key = `${ref.namespace}/${ref.name}`;
    const att: CniAttachment = {
      containerId: req.containerId,
      ifname: req.ifname,
      netns: req.netns,
      netnsPath: req.netnsPath,
      netnsInode: inodeOf(req.netnsPath),
      node: this.d.node.name,
      createdAt: new Date().toISOString(),
    };
    // The same container again (a runtime retrying its ADD) gets what it has.
    const have = this.d.desired().attachments.get(key);
    const st0 = this.status(ref.namespace, ref.name);
    if (have?.containerId === req.containerId && have.ifname === req.ifname && st0?.phase === 'Running')
      return this.answer(req, st0);
    try {
      await this.d.intake.attach(ref, att, (state) => {
        const pod = state.pods.get(key);
        if (pod && !pod.byRuntime)
          throw new WeirError(
            'ERR_CNI_REQUEST',
            `pod ${key} is a lab pod (created by weir itself); a runtime's pod must be annotated weir.dev/runtime: cni`,
            { location: { object: `Pod ${key}`, field: 'metadata.annotations["weir.dev/runtime"]' } },
          );
      });
    } catch (err) {
      // Nothing is left of a failed ADD (refused, failed on the node, timed out): its desired state
      // goes too, unless it is another container's.
      await this.d.intake.detach(ref, req.containerId).catch(() => undefined);
      if (err instanceof WeirError && err.code === 'ERR_API_POD_FAILED')
        throw new WeirError('ERR_CNI_ATTACHMENT_FAILED', err.message, { cause: err });
      throw err;
    }
    const st = this.status(ref.namespace, ref.name);
    if (!st || st.phase !== 'Running' || st.containerId !== req.containerId) {
      await this.d.intake.detach(ref, req.containerId).catch(() => undefined);
      throw new WeirError(
        'ERR_CNI_ATTACHMENT_FAILED',
        `node ${this.d.node.name} did not attach container ${req.containerId} as pod ${key}: ${st?.message ?? st?.phase ?? 'no status'}`,
      );
    }
    return this.answer(req, st);
  }

  private answer(req: CniAddRequest, st: PodStatus): CniAddAnswer {
    const ep = this.d.agent.endpoints().find((e) => e.namespace === req.namespace && e.pod === req.name);
    return {
      namespace: req.namespace,
      name: req.name,
      ifname: req.ifname,
      mac: st.mac ?? '',
      ip: st.ip,
      ...(st.ip6 ? { ip6: st.ip6 } : {}),
      gateway: this.d.node.ip,
      hostIfname: st.hostIfname,
      ...(ep ? { endpointId: ep.id } : {}),
    };
  }

  /** DEL: idempotent; a DEL for a container the pod no longer has removes nothing. */
  async del(body: unknown): Promise<{ removed: boolean }> {
    const ref = podRef(body);
    return { removed: await this.d.intake.detach(ref, ref.containerId) };
  }

  /** CHECK: the attachment, its endpoint and programs, and the container's addresses as the result said. */
  async check(body: unknown): Promise<{ ok: true }> {
    const ref = podRef(body);
    const ifname = str(body, 'ifname');
    const netnsPath = str(body, 'netnsPath', false);
    const ips = (body as { ips?: unknown }).ips;
    const key = `${ref.namespace}/${ref.name}`;
    const att = this.d.desired().attachments.get(key);
    if (!att || att.containerId !== ref.containerId)
      throw new WeirError('ERR_CNI_NOT_FOUND', `container ${ref.containerId} is not attached as pod ${key}`);
    const st = this.status(ref.namespace, ref.name);
    if (!st || st.phase !== 'Running')
      throw new WeirError(
        'ERR_CNI_NOT_FOUND',
        `pod ${key} is ${st?.phase ?? 'not created'}${st?.message ? `: ${st.message}` : ''}`,
      );
    const ep = this.d.agent.endpoints().find((e) => e.namespace === ref.namespace && e.pod === ref.name);
    if (!ep) throw new WeirError('ERR_CNI_NOT_FOUND', `pod ${key} has no endpoint`);
    if (ep.state !== 'ready') throw new WeirError('ERR_CNI_NOT_FOUND', `endpoint ${ep.id} is ${ep.state}`);
    for (const direction of ['ingress', 'egress'] as const)
      if (queryTc({ netns: this.d.node.netns, ifindex: ep.ifindex, direction }) === undefined)
        throw new WeirError(
          'ERR_CNI_NOT_FOUND',
          `no program at tc ${direction} of ${ep.ifname} (endpoint ${ep.id} of pod ${key})`,
        );
    const want = Array.isArray(ips) ? ips.map(String) : [];
    for (const ip of want)
      if (!ep.ips.includes(ip))
        throw new WeirError(
          'ERR_CNI_NOT_FOUND',
          `pod ${key} has ${ep.ips.join(', ')}, not ${ip} (prevResult)`,
        );
    if (netnsPath) {
      const inside = await containerAddresses(netnsPath, ifname);
      for (const ip of ep.ips)
        if (!inside.includes(ip))
          throw new WeirError(
            'ERR_CNI_NOT_FOUND',
            `the container's ${ifname} lacks ${ip} (it has ${inside.join(', ') || 'none'})`,
          );
    }
    return { ok: true };
  }

  /** GC: removes this node's attachments of containers not in the runtime's list. */
  async gc(body: unknown): Promise<{ removed: string[] }> {
    const valid = (body as { valid?: unknown }).valid;
    if (!Array.isArray(valid))
      throw new WeirError('ERR_CNI_REQUEST', 'weir-cni GC request: valid must be a list of container ids', {
        location: { object: 'weir-cni request', field: 'valid' },
      });
    const keep = new Set(valid.map(String));
    const removed: string[] = [];
    for (const a of this.d.desired().attachments.values()) {
      if (a.node !== this.d.node.name || keep.has(a.containerId)) continue;
      if (await this.d.intake.detach(a, a.containerId)) removed.push(`${a.namespace}/${a.name}`);
    }
    return { removed };
  }

  list(): CniAttachmentInfo[] {
    return [...this.d.desired().attachments.values()]
      .map((a) => {
        const st = this.status(a.namespace, a.name);
        const mine = st?.containerId === a.containerId;
        return {
          namespace: a.namespace,
          name: a.name,
          containerId: a.containerId,
          node: a.node,
          ifname: a.ifname,
          netns: a.netns,
          createdAt: a.createdAt,
          phase: mine && st ? st.phase : 'Pending',
          ip: mine && st ? st.ip : '',
          ...(mine && st?.ip6 ? { ip6: st.ip6 } : {}),
          hostIfname: mine && st ? st.hostIfname : '',
          ...(mine && st?.message ? { message: st.message } : {}),
        };
      })
      .sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
  }
}

export function cniRoutes(cni: CniService): Route[] {
  return [
    { method: 'GET', pattern: '/v1/cni/status', handler: () => cni.readiness() },
    { method: 'GET', pattern: '/v1/cni/attachments', handler: () => ({ items: cni.list() }) },
    { method: 'POST', pattern: '/v1/cni/add', handler: (req) => cni.add(req.body) },
    { method: 'POST', pattern: '/v1/cni/del', handler: (req) => cni.del(req.body) },
    { method: 'POST', pattern: '/v1/cni/check', handler: (req) => cni.check(req.body) },
    { method: 'POST', pattern: '/v1/cni/gc', handler: (req) => cni.gc(req.body) },
  ];
}

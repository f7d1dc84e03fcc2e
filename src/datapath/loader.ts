// The datapath loader: loads dist/bpf/lxc.o once per node, shares its maps through pins (so a
// restarted agent finds its state and the attached programs keep forwarding meanwhile), and
// attaches the two tc programs to pod veths. It knows maps, not policies: callers write entries.
//
// Which maps exist, which are pinned and which object owns them: the map catalogue
// (maps/catalog.ts, also the table in docs/datapath.md). Pins, under pinDir (e.g.
// /sys/fs/bpf/weir/<lab>/<node>): every map the catalogue marks pinned, by its name; the inner
// policy maps as policy_<endpoint id>; the two tc programs weir_from_container and
// weir_to_container. The stages they tail call (bpf/lib/stages.h: weir_to_local, eBPF host
// routing's ingress entry of a local destination, and the policy stages weir_policy_egress /
// weir_policy_ingress) are never attached: the pinned program array weir_calls holds them, every
// slot filled at every load before any endpoint is attached. Socket load balancing (bpf/sock.c) is a second object, dist/bpf/sock.o,
// loaded after lxc.o with lxc.o's lb maps (reuseMap), pinned or not. Its programs are not
// pinned: attachSockLb's cgroup attachments hold them; weir_from_netdev, weir_to_proxy and the
// tunnel device's weir_from_overlay / weir_to_overlay are not pinned either (attachNetdev's,
// attachHost's and attachOverlay's filters hold them).
// Without pinDir nothing is pinned (datapath tests): maps live as long as this process holds them.
import { existsSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import {
  BpfError,
  BpfMap,
  BpfObject,
  BpfProgram,
  ERR_BPF_NOT_FOUND,
  MapType,
  TypedMap,
  attachCgroup,
  onCgroup,
  attachTc,
  detachCgroup,
  detachTc,
  queryCgroup,
  ifindexIn,
  perCpu,
  withNetns,
  u32,
  u64,
  type CgroupAttachTypeName,
  type ConfigValue,
} from '../bpf/index.js';
import { WeirError, type ErrorCode } from '../shared/errors.js';
import { bpfObject } from '../shared/paths.js';
import { CtMap } from './maps/ct/index.js';
import { EndpointsMap } from './maps/endpoints/index.js';
import { FragKey, FragPorts } from './maps/frag/layout.js';
import { IpcacheMap } from './maps/ipcache/index.js';
import { LbMaps } from './maps/lb/index.js';
import { AuthMap } from './maps/auth/index.js';
import { LxcMap } from './maps/lxc/index.js';
import { MAGLEV_TABLE_SIZES } from './maps/lb/layout.js';
import {
  checkKind,
  mapDecl,
  openPinned,
  pinnedMaps,
  policyPinName,
  POLICY_PIN,
  RETIRED_PINS,
  reusedMaps,
  type ObjectMapName,
  type PinnedMapName,
} from './maps/catalog.js';
import { MetricsMap } from './maps/metrics/index.js';
import { PolicyMap, type PolicyMapEntry } from './maps/policy/index.js';
import { PolicyEntry, PolicyKey } from './maps/policy/layout.js';
import { TunnelConfig } from './maps/tunnel/layout.js';

/** lxc.o's maps that every load reuses from their pins (the catalogue's pinned lxc.o maps). */
export const PINNED_MAPS = pinnedMaps('lxc');
/** sock.o's maps, taken from lxc.o at load (the catalogue's lb maps). */
export const SOCK_REUSED_MAPS = reusedMaps('sock');
export const PROGRAMS = { fromContainer: 'weir_from_container', toContainer: 'weir_to_container' } as const;
/** tc ingress of the node's external-facing devices: NodePort (bpf/lib/nodeport.h). */
export const NETDEV_PROGRAM = 'weir_from_netdev';
/**
 * Tunnel mode (bpf/lib/overlay.h), on the node's VXLAN device (external / collect_md): tc ingress
 * judges what pods of other nodes send (their identity in the VNI), tc egress gives the node's own
 * packets routed into the device a tunnel key. Attached by attachOverlay.
 */
export const OVERLAY_PROGRAMS = { fromOverlay: 'weir_from_overlay', toOverlay: 'weir_to_overlay' } as const;
/** tc ingress of the node's weir_host device: delivery to the node proxy (bpf/lib/proxy.h). */
export const HOST_PROGRAM = 'weir_to_proxy';
/**
 * Tail called by weir_from_container through weir_calls (bpf/lib/host_routing.h): the ingress entry
 * of a local destination pod, before eBPF host routing delivers into it. Never attached.
 */
export const LOCAL_PROGRAM = 'weir_to_local';
/**
 * The policy stages (bpf/lib/stages.h): tail called by the entry programs for the first packet of
 * a new connection (policy, conntrack entry, verdict event, delivery). Never attached.
 */
export const POLICY_PROGRAMS = { egress: 'weir_policy_egress', ingress: 'weir_policy_ingress' } as const;
/** Slots of weir_calls (CALL_* in bpf/lib/stages.h). Never renumbered. */
export const CALLS = { toLocal: 0, policyEgress: 1, policyIngress: 2 } as const;
export type StageProgram = typeof LOCAL_PROGRAM | (typeof POLICY_PROGRAMS)[keyof typeof POLICY_PROGRAMS];
/** What the loader puts in each slot of weir_calls, at every load, before attaching anything. */
export const STAGE_PROGRAMS: readonly (readonly [number, StageProgram])[] = [
  [CALLS.toLocal, LOCAL_PROGRAM],
  [CALLS.policyEgress, POLICY_PROGRAMS.egress],
  [CALLS.policyIngress, POLICY_PROGRAMS.ingress],
];
/** How forwarded pod traffic is routed: eBPF host routing (default) or the node's stack. */
export const HOST_ROUTING_MODES = ['bpf', 'legacy'] as const;
export type HostRouting = (typeof HOST_ROUTING_MODES)[number];
/** NodePort forwarding (Cilium's --bpf-lb-mode): snat (default) or dsr. */
export const LB_MODES = ['snat', 'dsr'] as const;
export type LbMode = (typeof LB_MODES)[number];
/** sock.o's programs by the cgroup hook each is attached to. */
export const SOCK_PROGRAMS = {
  connect4: 'weir_sock4_connect',
  connect6: 'weir_sock6_connect',
  sendmsg4: 'weir_sock4_sendmsg',
  sendmsg6: 'weir_sock6_sendmsg',
  recvmsg4: 'weir_sock4_recvmsg',
  recvmsg6: 'weir_sock6_recvmsg',
  getpeername4: 'weir_sock4_getpeername',
  getpeername6: 'weir_sock6_getpeername',
} as const satisfies Partial<Record<CgroupAttachTypeName, string>>;
type SockHook = keyof typeof SOCK_PROGRAMS;
const sockHooks = () => Object.entries(SOCK_PROGRAMS) as [SockHook, string][];
/** The kernel keeps 15 characters of a program's name (BPF_OBJ_NAME_LEN). */
const kernelName = (name: string) => name.slice(0, 15);

/** What Datapath.open uses for options it is not given. */
export const DATAPATH_DEFAULTS = {
  policyMapMax: 16384,
  ctMax: 262144,
  eventsBufferBytes: 4 << 20,
  maglevTableSize: 16381,
  lbMode: 'snat',
  hostRouting: 'bpf',
} as const satisfies Partial<Record<keyof DatapathOptions, unknown>>;

/** Load-time configuration (bpf/lib/config.h), in seconds. */
export interface DatapathConfig {
  ctTimeoutSyn: number;
  ctTimeoutTcp: number;
  ctTimeoutClose: number;
  ctTimeoutAny: number;
}

export const defaultConfig: Readonly<DatapathConfig> = {
  ctTimeoutSyn: 60,
  ctTimeoutTcp: 21600,
  ctTimeoutClose: 10,
  ctTimeoutAny: 60,
};

const CONFIG_VARS: Record<keyof DatapathConfig, string> = {
  ctTimeoutSyn: 'weir_ct_timeout_syn',
  ctTimeoutTcp: 'weir_ct_timeout_tcp',
  ctTimeoutClose: 'weir_ct_timeout_close',
  ctTimeoutAny: 'weir_ct_timeout_any',
};

export interface DatapathOptions {
  /** Where maps and programs are pinned; absent: nothing is pinned. */
  pinDir?: string;
  /** Entries of each endpoint's policy map (Cilium's --bpf-policy-map-max; 256..65536, default 16384). */
  policyMapMax?: number;
  /** Entries of weir_ct (default 262144). */
  ctMax?: number;
  /**
   * Bytes of the weir_events ring buffer (default 4 MiB): a power of 2, at least one page, at most
   * 1 GiB. A pinned ring of another size is ERR_BPF_MAP_INCOMPATIBLE (remove its pin to resize).
   */
  eventsBufferBytes?: number;
  /** Write flow events (default true); false turns observability off in the datapath. */
  events?: boolean;
  config?: Partial<DatapathConfig>;
  /** The BPF object (default dist/bpf/lxc.o). */
  objectPath?: string;
  /** The socket LB object (default dist/bpf/sock.o). */
  sockObjectPath?: string;
  /**
   * Entries of every Maglev table (Cilium's --bpf-lb-maglev-table-size): one of 251, 509, 1021,
   * 2039, 4093, 8191, 16381 (default), 32749, 65521. Tables written for another size must be
   * rewritten (LbMaps.setMaglevTable checks the length).
   */
  maglevTableSize?: number;
  /** NodePort: the backend sees the node (snat, default) or the client (dsr). */
  lbMode?: LbMode;
  /**
   * bpf (default): what a pod's policy forwards skips the node's IP stack, into a local pod
   * (bpf_redirect_peer, its ingress policy applied by weir_to_local) or out of the device the FIB
   * names (bpf_redirect_neigh); legacy: the node's stack routes it (bpf/lib/host_routing.h).
   */
  hostRouting?: HostRouting;
  /**
   * ifindex of the node's weir_host device (in the node namespace): weir_to_container sends the
   * packets of connections redirected to the node proxy there (attachHost). 0/absent: none, such
   * connections drop (Proxy redirection not possible).
   */
  hostIfindex?: number;
}

export interface EndpointAttachment {
  /** Network namespace holding the host side of the pod's veth (the node's). */
  netns: string;
  /** The host-side veth, by name or ifindex (in `netns`). */
  ifname?: string;
  ifindex?: number;
  endpointId: number;
  identity: number;
  /** ENDPOINT_F_* (EndpointFlags); default 0. */
  flags?: number;
  /**
   * Where eBPF host routing delivers to the pod (weir_lxc): its addresses, its interface's MAC and
   * the host veth's. Absent: packets for it take the node's stack (and its weir_to_container).
   */
  local?: { ips: string[]; mac: string; hostMac: string };
}

const fail = (code: ErrorCode, message: string, field?: string) =>
  new WeirError(code, message, { location: { object: 'datapath', ...(field ? { field } : {}) } });

export class Datapath {
  readonly ipcache: IpcacheMap;
  readonly endpoints: EndpointsMap;
  /** Local pods by address, for eBPF host routing (weir_lxc). */
  readonly lxc: LxcMap;
  /** Authenticated identity pairs (weir_auth, `authentication.mode: required`). */
  readonly auth: AuthMap;
  readonly hostRouting: HostRouting;
  readonly ct: CtMap;
  readonly metrics: MetricsMap;
  readonly frag: TypedMap<ReturnType<typeof FragKey.decode>, ReturnType<typeof FragPorts.decode>>;
  /** The weir_events ring buffer (records: maps/events decodeFlowEvent); read with RingBufferReader. */
  readonly events: BpfMap;
  readonly #eventsLost: TypedMap<number, bigint[]>;
  readonly policyMapMax: number;
  /** Service load balancing: frontends, backends, Maglev tables, affinity (maps/lb). */
  readonly lb: LbMaps;
  readonly #obj: BpfObject;
  readonly #sock: BpfObject;
  /**
   * The stages' program array (weir_calls, slots CALLS): the loader fills it; a slot deleted (a test
   * of the fail-closed path) drops what would be tail called there (DROP_MISSED_TAIL_CALL).
   */
  readonly calls: TypedMap<number, number>;
  readonly #outer: TypedMap<number, number>;
  readonly #tunnel: TypedMap<number, ReturnType<typeof TunnelConfig.decode>>;
  readonly #policies = new Map<number, PolicyMap>();

  private constructor(
    obj: BpfObject,
    sock: BpfObject,
    readonly pinDir: string | undefined,
    policyMapMax: number,
    maglevTableSize: number,
    hostRouting: HostRouting,
  ) {
    this.#obj = obj;
    this.#sock = sock;
    const map = (name: ObjectMapName) => obj.map(name);
    this.lb = new LbMaps(
      {
        services: map('weir_lb_services'),
        backends: map('weir_lb_backends'),
        revnat: map('weir_lb_revnat'),
        maglev: map('weir_lb_maglev'),
        affinity: map('weir_lb_affinity'),
      },
      maglevTableSize,
    );
    this.policyMapMax = policyMapMax;
    this.ipcache = new IpcacheMap(map('weir_ipcache'));
    this.endpoints = new EndpointsMap(map('weir_endpoints'));
    this.lxc = new LxcMap(map('weir_lxc'));
    this.auth = new AuthMap(map('weir_auth'));
    this.hostRouting = hostRouting;
    this.ct = new CtMap(map('weir_ct'));
    this.metrics = new MetricsMap(map('weir_metrics'));
    this.frag = new TypedMap(map('weir_frag'), FragKey, FragPorts);
    this.calls = new TypedMap(map('weir_calls'), u32(), u32());
    this.#outer = new TypedMap(map('weir_policy'), u32(), u32());
    this.#tunnel = new TypedMap(map('weir_tunnel'), u32(), TunnelConfig);
    this.events = map('weir_events');
    this.#eventsLost = new TypedMap(map('weir_events_lost'), u32(), perCpu(u64()));
  }

  /** Flow events the datapath could not reserve room for (ring full), summed over CPUs. */
  eventsLost(): bigint {
    return (this.#eventsLost.lookup(0) ?? []).reduce((a, n) => a + n, 0n);
  }

  static open(opts: DatapathOptions = {}): Datapath {
    const policyMapMax = opts.policyMapMax ?? DATAPATH_DEFAULTS.policyMapMax;
    if (!Number.isInteger(policyMapMax) || policyMapMax < 256 || policyMapMax > 65536)
      throw fail(
        'ERR_DATAPATH_CONFIG',
        `policyMapMax ${policyMapMax} is not within 256..65536`,
        'policyMapMax',
      );
    const ctMax = opts.ctMax ?? DATAPATH_DEFAULTS.ctMax;
    if (!Number.isInteger(ctMax) || ctMax < 1024 || ctMax > 1 << 24)
      throw fail('ERR_DATAPATH_CONFIG', `ctMax ${ctMax} is not within 1024..16777216`, 'ctMax');
    const eventsBytes = opts.eventsBufferBytes ?? DATAPATH_DEFAULTS.eventsBufferBytes;
    // The kernel wants a power-of-2 multiple of the page size (4 KiB on weir's platforms).
    if (
      !Number.isInteger(eventsBytes) ||
      eventsBytes < 4096 ||
      eventsBytes > 1 << 30 ||
      (eventsBytes & (eventsBytes - 1)) !== 0
    )
      throw fail(
        'ERR_DATAPATH_CONFIG',
        `eventsBufferBytes ${eventsBytes} is not a power of 2 within 4096..1073741824`,
        'eventsBufferBytes',
      );
    const config = { ...defaultConfig, ...opts.config };
    const vars: Record<string, ConfigValue> = {};
    for (const [k, v] of Object.entries(config) as [keyof DatapathConfig, number][]) {
      if (!Number.isInteger(v) || v < 1 || v > 0xffffffff)
        throw fail(
          'ERR_DATAPATH_CONFIG',
          `config.${k} ${v} is not a positive number of seconds`,
          `config.${k}`,
        );
      vars[CONFIG_VARS[k]] = v;
    }

    vars.weir_events_enabled = opts.events === false ? 0 : 1;
    const maglevTableSize = opts.maglevTableSize ?? DATAPATH_DEFAULTS.maglevTableSize;
    if (!(MAGLEV_TABLE_SIZES as readonly number[]).includes(maglevTableSize))
      throw fail(
        'ERR_DATAPATH_CONFIG',
        `maglevTableSize ${maglevTableSize} is not one of ${MAGLEV_TABLE_SIZES.join(', ')}`,
        'maglevTableSize',
      );

    const lbMode: LbMode = opts.lbMode ?? DATAPATH_DEFAULTS.lbMode;
    if (!(LB_MODES as readonly string[]).includes(lbMode))
      throw fail('ERR_DATAPATH_CONFIG', `lbMode ${lbMode} is not one of ${LB_MODES.join(', ')}`, 'lbMode');

    const hostRouting: HostRouting = opts.hostRouting ?? DATAPATH_DEFAULTS.hostRouting;
    if (!(HOST_ROUTING_MODES as readonly string[]).includes(hostRouting))
      throw fail(
        'ERR_DATAPATH_CONFIG',
        `hostRouting ${hostRouting} is not one of ${HOST_ROUTING_MODES.join(', ')}`,
        'hostRouting',
      );

    const hostIfindex = opts.hostIfindex ?? 0;
    if (!Number.isInteger(hostIfindex) || hostIfindex < 0)
      throw fail('ERR_DATAPATH_CONFIG', `hostIfindex ${hostIfindex} is not an ifindex`, 'hostIfindex');

    const obj = loadRetrying(() => {
      const obj = BpfObject.open(opts.objectPath ?? bpfObject('lxc'));
      try {
        obj.setConfig({
          ...vars,
          weir_lb_maglev_size: maglevTableSize,
          weir_lb_dsr: lbMode === 'dsr' ? 1 : 0,
          weir_host_ifindex: hostIfindex,
          weir_host_routing: hostRouting === 'bpf' ? 1 : 0,
        });
        obj.setMapMaxEntries('weir_ct', ctMax);
        obj.setMapMaxEntries('weir_events', eventsBytes);
        if (opts.pinDir) {
          for (const name of RETIRED_PINS) removePin(opts.pinDir, name);
          for (const name of PINNED_MAPS) {
            replaceStalePin(opts.pinDir, name, obj);
            obj.reuseOrPinMap(name, join(opts.pinDir, name));
          }
        }
        obj.load();
        // The stages first: entry programs attached below (or by a previous agent, which share the
        // pinned weir_calls) tail call into them. Replacing a slot is atomic.
        const calls = new TypedMap(obj.map('weir_calls'), u32(), u32());
        for (const [slot, name] of STAGE_PROGRAMS) calls.update(slot, obj.program(name).fd);
        if (opts.pinDir) {
          // Replace the program pins: filters attached by a previous agent keep their programs,
          // which share these very maps; new attachments use the programs loaded now.
          for (const name of Object.values(PROGRAMS)) {
            const path = join(opts.pinDir, name);
            if (existsSync(path)) unlinkSync(path);
            obj.program(name).pin(path);
          }
        }
      } catch (err) {
        obj.close();
        throw err;
      }
      return obj;
    });
    let sock: BpfObject;
    try {
      sock = loadRetrying(() => {
        const sock = BpfObject.open(opts.sockObjectPath ?? bpfObject('sock'));
        try {
          sock.setConfig({ weir_lb_maglev_size: maglevTableSize });
          for (const name of SOCK_REUSED_MAPS) sock.reuseMap(name, obj.map(name));
          sock.load();
        } catch (err) {
          sock.close();
          throw err;
        }
        return sock;
      });
    } catch (err) {
      obj.close();
      throw err;
    }
    return new Datapath(obj, sock, opts.pinDir, policyMapMax, maglevTableSize, hostRouting);
  }

  /**
   * Attaches socket load balancing to every process of the cgroup v2 directory `cgroupPath` (and
   * its sub-cgroups): the eight sock_addr programs of SOCK_PROGRAMS. Attached with 'multi', so
   * other cgroup programs (policy, a parent's) keep running beside them; a program of the same
   * name attached earlier (e.g. by a previous agent) is detached once this one is in, so re-attach
   * replaces and the hook is never without weir's program. Idempotent. On failure the hooks this
   * call attached are detached again.
   */
  attachSockLb(cgroupPath: string): void {
    const added: SockHook[] = [];
    try {
      // One open of the cgroup and one query per hook (a new pod's cgroup has no programs yet).
      onCgroup(cgroupPath, () => {
        for (const [hook, name] of sockHooks()) {
          const program = this.#sock.program(name);
          const target = { cgroupPath, attachType: hook };
          const before = queryCgroup(target).progIds;
          if (!before.includes(program.id)) {
            attachCgroup({ ...target, program, flags: 'multi' });
            added.push(hook);
          }
          this.#detachStale(cgroupPath, hook, name, program.id, before);
        }
      });
    } catch (err) {
      for (const hook of added)
        detachCgroup({ cgroupPath, attachType: hook, program: this.#sock.program(SOCK_PROGRAMS[hook]) });
      throw err;
    }
  }

  /**
   * Detaches weir's socket LB programs from the cgroup, whichever process attached them (they are
   * recognised by name). Sockets already connected keep their backend; new ones are untouched.
   */
  detachSockLb(cgroupPath: string): void {
    for (const [hook, name] of sockHooks()) this.#detachStale(cgroupPath, hook, name, undefined);
  }

  /** Detaches the programs named `name` from the hook, except the one with id `keep`. */
  #detachStale(
    cgroupPath: string,
    hook: CgroupAttachTypeName,
    name: string,
    keep: number | undefined,
    attached = queryCgroup({ cgroupPath, attachType: hook }).progIds,
  ): void {
    for (const id of attached) {
      if (id === keep) continue;
      let program: BpfProgram;
      try {
        program = BpfProgram.fromId(id);
      } catch (err) {
        if (err instanceof BpfError && err.errnoName === 'ENOENT') continue; // detached and freed meanwhile
        throw err;
      }
      try {
        if (program.name === kernelName(name)) detachCgroup({ cgroupPath, attachType: hook, program });
      } finally {
        program.close();
      }
    }
  }

  /**
   * Attaches weir_from_netdev at tc ingress of a device facing the outside (in the node's
   * `netns`): NodePort packets arriving there are load-balanced (bpf/lib/nodeport.h), the rest
   * pass. Re-attaching replaces the program. Returns the device's ifindex.
   */
  attachNetdev(d: { netns: string; ifname?: string; ifindex?: number }): number {
    const ifindex = resolveIfindex(d);
    attachTc({ netns: d.netns, ifindex, direction: 'ingress', program: this.program(NETDEV_PROGRAM) });
    return ifindex;
  }

  /** Undoes attachNetdev; a device (or namespace) that is gone is not an error. */
  detachNetdev(d: { netns: string; ifname?: string; ifindex?: number }): void {
    try {
      detachTc({ netns: d.netns, ifindex: resolveIfindex(d), direction: 'ingress' });
    } catch (err) {
      if (!isGone(err)) throw err;
    }
  }

  /**
   * Attaches weir_to_proxy at tc ingress of the node's weir_host device (in `netns`): packets the
   * pods' weir_to_container redirects there reach the node proxy. Re-attaching replaces it.
   */
  attachHost(d: { netns: string; ifname?: string; ifindex?: number }): number {
    const ifindex = resolveIfindex(d);
    attachTc({ netns: d.netns, ifindex, direction: 'ingress', program: this.program(HOST_PROGRAM) });
    return ifindex;
  }

  /**
   * Tunnel mode (bpf/lib/overlay.h): makes the VXLAN device `d` (external / collect_md, in the
   * node's `netns`; src/lab creates it) the node's tunnel: weir_from_overlay at its tc ingress,
   * weir_to_overlay at its tc egress, then its ifindex in weir_tunnel, from which moment pods'
   * traffic to addresses whose ipcache entry names a tunnel endpoint is encapsulated into it (the
   * VNI the sender's identity). Re-attaching replaces the programs. Returns the device's ifindex.
   */
  attachOverlay(d: { netns: string; ifname?: string; ifindex?: number }): number {
    const ifindex = resolveIfindex(d);
    for (const [direction, prog] of [
      ['ingress', OVERLAY_PROGRAMS.fromOverlay],
      ['egress', OVERLAY_PROGRAMS.toOverlay],
    ] as const)
      attachTc({ netns: d.netns, ifindex, direction, program: this.program(prog) });
    const encryptPort = this.#tunnel.lookup(0)?.encryptPort ?? 0;
    this.#tunnel.update(0, { ifindex, flags: 0, encryptPort });
    return ifindex;
  }

  /**
   * --encryption mtls (bpf/lib/overlay.h): pods' new TCP connections to other nodes' pods go to the
   * node proxy's outbound tunnel listener on `port` (no listener: dropped, fail closed); 0: off,
   * plain VXLAN. Takes effect with attachOverlay (kept across it).
   */
  setEncryptPort(port: number): void {
    const have = this.#tunnel.lookup(0) ?? { ifindex: 0, flags: 0, encryptPort: 0 };
    this.#tunnel.update(0, { ...have, encryptPort: port });
  }

  /**
   * Undoes attachOverlay: no tunnel in weir_tunnel first (pods' traffic to other nodes then follows
   * the node's routing), then the device's filters (a device or namespace that is gone is not an
   * error).
   */
  detachOverlay(d: { netns: string; ifname?: string; ifindex?: number }): void {
    this.#tunnel.update(0, { ifindex: 0, flags: 0, encryptPort: 0 });
    try {
      const ifindex = resolveIfindex(d);
      for (const direction of ['ingress', 'egress'] as const)
        detachTc({ netns: d.netns, ifindex, direction });
    } catch (err) {
      if (!isGone(err)) throw err;
    }
  }

  /** The VXLAN device's ifindex pods' traffic is encapsulated into (weir_tunnel); 0: none. */
  tunnelIfindex(): number {
    return this.#tunnel.lookup(0)?.ifindex ?? 0;
  }

  program(
    name:
      | (typeof PROGRAMS)[keyof typeof PROGRAMS]
      | typeof NETDEV_PROGRAM
      | typeof HOST_PROGRAM
      | typeof LOCAL_PROGRAM
      | StageProgram
      | (typeof OVERLAY_PROGRAMS)[keyof typeof OVERLAY_PROGRAMS],
  ): BpfProgram {
    return this.#obj.program(name);
  }

  #policyPin(endpointId: number): string | undefined {
    return this.pinDir ? join(this.pinDir, policyPinName(endpointId)) : undefined;
  }

  /**
   * The endpoint's policy map, created (and pinned, and linked into weir_policy) when missing.
   * Until it exists the datapath drops the endpoint's new connections (DROP_EP_NOT_READY).
   */
  ensurePolicyMap(endpointId: number): PolicyMap {
    return this.ensurePolicyMaps([endpointId])[0] as PolicyMap;
  }

  /**
   * ensurePolicyMap for many endpoints, linking into weir_policy only the maps it does not point
   * to yet, with one batch update: the kernel waits for an RCU grace period (~10 ms) after each
   * change of a map of maps, once per syscall, so a batch of new endpoints waits once. On failure
   * the maps this call created are removed again.
   */
  ensurePolicyMaps(endpointIds: readonly number[]): PolicyMap[] {
    for (const id of endpointIds) checkEndpointId(id);
    const created: number[] = [];
    try {
      const maps = endpointIds.map((id) => {
        const known = this.#policies.get(id) ?? this.#openPolicy(id);
        if (known) return known;
        const inner = BpfMap.create({
          type: 'lpm_trie',
          name: `weir_pol_${id}`,
          keySize: PolicyKey.size,
          valueSize: PolicyEntry.size,
          maxEntries: this.policyMapMax,
        });
        const pm = new PolicyMap(inner, id);
        this.#policies.set(id, pm);
        created.push(id);
        const pin = this.#policyPin(id);
        if (pin) inner.pin(pin);
        return pm;
      });
      const unlinked = maps.filter(
        (pm) => created.includes(pm.endpointId) || this.#outer.lookup(pm.endpointId) !== pm.map.id,
      );
      this.#outer.updateBatch(unlinked.map((pm) => [pm.endpointId, pm.map.fd]));
      return maps;
    } catch (err) {
      for (const id of created) this.#dropPolicy(id);
      throw err;
    }
  }

  /** The endpoint's policy map; ERR_DATAPATH_NO_POLICY_MAP when it has none. */
  policy(endpointId: number): PolicyMap {
    const pm = this.#policies.get(endpointId) ?? this.#openPolicy(endpointId);
    if (!pm)
      throw fail('ERR_DATAPATH_NO_POLICY_MAP', `endpoint ${endpointId} has no policy map`, 'endpointId');
    return pm;
  }

  /**
   * The entries of the endpoint's policy map as this process knows it (its own, or the one a
   * previous agent left: pin, else weir_policy); undefined when the endpoint has none yet.
   * A map that cannot be read is an error naming it and the errno, never "no entries".
   */
  readPolicy(endpointId: number): PolicyMapEntry[] | undefined {
    const pm = this.#policies.get(endpointId) ?? this.#openPolicy(endpointId);
    return pm ? readNamed(pm, endpointId) : undefined;
  }

  /**
   * What the programs use: the policy map weir_policy[endpointId] points to now, read afresh
   * (not this process's handle). undefined when weir_policy has no entry for the endpoint
   * (ENOENT of that lookup: the datapath drops its new connections, Endpoint not ready); any
   * other failure (the lookup, opening the map, reading it) is an error naming the map and errno.
   */
  livePolicy(endpointId: number): PolicyMapEntry[] | undefined {
    checkEndpointId(endpointId);
    const id = this.#outer.lookup(endpointId);
    if (id === undefined) return undefined;
    const map = BpfMap.fromId(id);
    try {
      checkKind(map, policyPinName(endpointId), `weir_policy[${endpointId}] (map id ${id})`);
      return readNamed(new PolicyMap(map, endpointId), endpointId);
    } finally {
      map.close();
    }
  }

  /**
   * A policy map left by a previous agent: from its pin, or through weir_policy; undefined when
   * the endpoint has none (no pin, no weir_policy entry). A pin or map that cannot be opened, or
   * is not an LPM trie of the policy map's shape, is an error: never read as an empty policy.
   */
  #openPolicy(endpointId: number): PolicyMap | undefined {
    const pin = this.#policyPin(endpointId);
    let map: BpfMap | undefined;
    if (pin && existsSync(pin) && this.pinDir)
      map = openPinned(this.pinDir, policyPinName(endpointId) as `policy_${number}`);
    else {
      const id = this.#outer.lookup(endpointId);
      if (id !== undefined) {
        map = BpfMap.fromId(id);
        try {
          checkKind(map, policyPinName(endpointId), `weir_policy[${endpointId}]`);
        } catch (err) {
          map.close();
          throw err;
        }
      }
    }
    if (!map) return undefined;
    let pm: PolicyMap;
    try {
      pm = new PolicyMap(map, endpointId);
    } catch (err) {
      map.close();
      throw err;
    }
    this.#policies.set(endpointId, pm);
    return pm;
  }

  #unpinPolicy(endpointId: number): void {
    const pin = this.#policyPin(endpointId);
    if (pin && existsSync(pin)) unlinkSync(pin);
  }

  /**
   * Makes a pod an endpoint: its policy map, its weir_endpoints entry, then both programs on its
   * host-side veth (tc ingress: weir_from_container; tc egress: weir_to_container). On failure
   * what this call added is removed again. Returns the veth's ifindex.
   */
  attachEndpoint(a: EndpointAttachment): number {
    const ifindex = resolveIfindex(a);
    checkEndpointId(a.endpointId);
    const hadPolicy = this.#policies.has(a.endpointId) || this.#openPolicy(a.endpointId) !== undefined;
    const hadEndpoint = this.endpoints.get(ifindex) !== undefined;
    const attached: ('ingress' | 'egress')[] = [];
    const local = a.local?.ips.map((ip) => ({
      ip,
      ifindex,
      mac: a.local?.mac ?? '',
      hostMac: a.local?.hostMac ?? '',
    }));
    const hadLocal = local?.map((l) => this.lxc.get(l.ip));
    try {
      this.ensurePolicyMap(a.endpointId);
      this.endpoints.set(ifindex, { endpointId: a.endpointId, identity: a.identity, flags: a.flags ?? 0 });
      for (const l of local ?? []) this.lxc.set(l);
      // Both directions from one switch into the node's namespace.
      withNetns(a.netns, () => {
        for (const [direction, prog] of [
          ['ingress', PROGRAMS.fromContainer],
          ['egress', PROGRAMS.toContainer],
        ] as const) {
          attachTc({ ifindex, direction, program: this.program(prog) });
          attached.push(direction);
        }
      });
    } catch (err) {
      for (const direction of attached) detachTc({ netns: a.netns, ifindex, direction });
      local?.forEach((l, i) => {
        const had = hadLocal?.[i];
        if (had) this.lxc.set(had);
        else this.lxc.delete(l.ip);
      });
      if (!hadEndpoint) this.endpoints.delete(ifindex);
      if (!hadPolicy) this.#dropPolicy(a.endpointId);
      throw err;
    }
    return ifindex;
  }

  /**
   * Undoes attachEndpoint: the tc filters (if the veth still exists), the endpoint's
   * weir_endpoints and weir_lxc entries, its policy map and pin. Conntrack entries age out.
   */
  detachEndpoint(a: Omit<EndpointAttachment, 'identity' | 'flags'>): void {
    this.detachEndpoints([a]);
  }

  /**
   * detachEndpoint for many endpoints: one pass over weir_endpoints and weir_lxc, and their policy
   * maps unlinked from weir_policy in one batch delete (one RCU grace period, not one each).
   */
  detachEndpoints(list: readonly Omit<EndpointAttachment, 'identity' | 'flags'>[]): void {
    const gone = new Set<number>();
    for (const a of list) {
      let ifindex = a.ifindex;
      try {
        if (ifindex === undefined && a.ifname) ifindex = ifindexIn(a.netns, a.ifname);
        for (const direction of ['ingress', 'egress'] as const) {
          if (ifindex !== undefined) detachTc({ netns: a.netns, ifindex, direction });
        }
      } catch (err) {
        // The veth or its namespace is gone, and the filters with it.
        if (!isGone(err)) throw err;
      }
      if (ifindex !== undefined) gone.add(ifindex);
    }
    const ids = new Set(list.map((a) => a.endpointId));
    for (const { ifindex: idx, endpoint } of this.endpoints.list()) {
      if (ids.has(endpoint.endpointId)) {
        this.endpoints.delete(idx);
        gone.add(idx);
      }
    }
    for (const l of this.lxc.list()) if (gone.has(l.ifindex)) this.lxc.delete(l.ip);
    this.#outer.deleteBatch(ids);
    for (const id of ids) this.#dropPolicy(id);
  }

  #dropPolicy(endpointId: number): void {
    this.#outer.delete(endpointId);
    this.#policies.get(endpointId)?.close();
    this.#policies.delete(endpointId);
    this.#unpinPolicy(endpointId);
  }

  /** Releases this process's handles; pins, attachments and traffic stay. */
  close(): void {
    for (const pm of this.#policies.values()) pm.close();
    this.#policies.clear();
    this.#obj.close();
    this.#sock.close();
  }

  /** close(), then removes every pin weir made under pinDir (and pinDir itself when empty). */
  destroy(): void {
    this.close();
    const dir = this.pinDir;
    if (!dir || !existsSync(dir)) return;
    const ours = new Set<string>([...PINNED_MAPS, ...RETIRED_PINS, ...Object.values(PROGRAMS)]);
    for (const name of readdirSync(dir)) {
      if (ours.has(name) || POLICY_PIN.test(name)) unlinkSync(join(dir, name));
    }
    if (readdirSync(dir).length === 0) rmdirSync(dir);
  }
}

/** A retired map's pin (the catalogue's RETIRED_PINS), if there. */
function removePin(pinDir: string, name: string): void {
  const path = join(pinDir, name);
  if (existsSync(path)) unlinkSync(path);
}

/**
 * A counters or scratch map (the catalogue's replaceOtherKind) pinned by an earlier weir as another
 * kind of map, or with another key or value size or number of entries than `obj` declares: the pin
 * goes, the load creates the map anew. Programs still attached keep the old map until they are
 * replaced.
 */
function replaceStalePin(pinDir: string, name: PinnedMapName, obj: BpfObject): void {
  const decl = mapDecl(name);
  const path = join(pinDir, name);
  if (!decl?.replaceOtherKind || !existsSync(path)) return;
  const want = obj.declaredMaps().find((m) => m.name === name);
  const pinned = BpfMap.fromPin(path);
  const stale =
    pinned.type !== MapType[decl.kind] ||
    (want !== undefined &&
      (pinned.keySize !== want.keySize ||
        pinned.valueSize !== want.valueSize ||
        pinned.maxEntries !== want.maxEntries));
  pinned.close();
  if (stale) unlinkSync(path);
}

/** The map's entries; a failure says whose policy map it was (the BpfError names map and errno). */
function readNamed(pm: PolicyMap, endpointId: number): PolicyMapEntry[] {
  try {
    return pm.list();
  } catch (err) {
    if (!(err instanceof WeirError)) throw err;
    const opts = {
      location: { ...err.location, object: err.location.object ?? policyPinName(endpointId) },
      details: err.details,
      cause: err,
    };
    const message = `policy map of endpoint ${endpointId}: ${err.message}`;
    throw err instanceof BpfError
      ? new BpfError(err.code, message, { ...opts, errno: err.errno })
      : new WeirError(err.code, message, opts);
  }
}

const isGone = (err: unknown) =>
  err instanceof BpfError &&
  (err.code === ERR_BPF_NOT_FOUND || ['ENODEV', 'ENOENT', 'EINVAL'].includes(err.errnoName));

function checkEndpointId(id: number): void {
  if (!Number.isInteger(id) || id < 1 || id > 0xffff)
    throw fail('ERR_DATAPATH_ENDPOINT', `endpoint id ${id} is not within 1..65535`, 'endpointId');
}

function resolveIfindex(a: { netns: string; ifname?: string; ifindex?: number }): number {
  if (a.ifindex !== undefined) {
    if (!Number.isInteger(a.ifindex) || a.ifindex < 1)
      throw fail('ERR_DATAPATH_ENDPOINT', `ifindex ${a.ifindex} is not a positive integer`, 'ifindex');
    return a.ifindex;
  }
  if (!a.ifname) throw fail('ERR_DATAPATH_ENDPOINT', 'an endpoint needs ifname or ifindex', 'ifname');
  return ifindexIn(a.netns, a.ifname);
}

/**
 * Opens and loads a BPF object, again (at most 3 tries) when the kernel answered EAGAIN: a
 * verification cut short (a signal arriving while the verifier runs, seen under load and with
 * `node --cpu-prof`) is worth repeating; any other failure is final.
 */
function loadRetrying<T>(load: () => T): T {
  for (let attempt = 1; ; attempt++) {
    try {
      return load();
    } catch (err) {
      if (attempt >= 3 || !(err instanceof BpfError) || err.errno !== constants.errno.EAGAIN) throw err;
    }
  }
}

// The one declaration of every BPF map weir's datapath has: its name, kind, whether it is pinned
// (shared by every load of the datapath, so it outlives an agent) or per-load (a new, empty map
// each time the object is loaded), which object declares and creates it, and what it is for.
//
// Everything else derives from this table: the loader's pin and reuse lists (loader.ts), the
// names the map wrappers and the `weir bpf …` commands open, the map table of docs/datapath.md
// (between its `maps` markers). catalog.test.ts reads the `.maps` section of every object in
// dist/bpf and fails on a map declared in C but not here, on one declared here but missing from
// its object, and on a kind that differs.
//
// Owners: lxc.o (bpf/lxc.c) declares and creates the node's maps. sock.o (bpf/sock.c) includes
// lib/lb.h too, so it declares the lb maps, but never creates them: the loader hands it lxc.o's
// (BpfObject.reuseMap). 'loader' maps are created by user space at run time (one per endpoint or
// per Maglev frontend) and live inside an outer map of lxc.o.
import { join } from 'node:path';
import { BpfMap, MapType, type MapTypeName } from '../../bpf/index.js';
import { WeirError } from '../../shared/errors.js';

/** The compiled objects of bpf/*.c (dist/bpf/<name>.o). */
export type ObjectName = 'lxc' | 'sock';

export interface MapDecl {
  /** The name in C (and of its pin); for loader maps the pin's pattern. */
  readonly name: string;
  readonly kind: MapTypeName;
  /**
   * pinned: reused from its pin under /sys/fs/bpf/weir/<lab>/<node>/ by every load (state that
   * must survive an agent restart); inner: not pinned itself, it lives as long as its outer
   * (pinned) map holds it; per-load: every load creates a new, empty one.
   */
  readonly lifetime: 'pinned' | 'inner' | 'per-load';
  /** Who creates it: an object (lxc.o) or the loader at run time. */
  readonly owner: ObjectName | 'loader';
  /** Objects that declare it too but get the owner's map at load (sock.o: the lb maps). */
  readonly reusedBy: readonly ObjectName[];
  /** Where it is declared (bpf/lib/*.h) or created (src/…). */
  readonly source: string;
  /** Key → value, for people. */
  readonly entry: string;
  /** One line: what it is for. */
  readonly purpose: string;
  /**
   * Counters and scratch only: a pin of another kind or shape (an earlier weir's) is removed and
   * the map created anew at load, instead of refusing it (ERR_BPF_MAP_INCOMPATIBLE).
   */
  readonly replaceOtherKind?: boolean;
}

/** A map lxc.o declares and creates (pinned unless `more` says otherwise). */
function lxc<N extends string, L extends MapDecl['lifetime'] = 'pinned'>(
  name: N,
  kind: MapTypeName,
  source: string,
  entry: string,
  purpose: string,
  more: { lifetime?: L; reusedBy?: readonly ObjectName[]; replaceOtherKind?: boolean } = {},
): MapDecl & { name: N; lifetime: L; owner: 'lxc' } {
  return {
    ...(more.replaceOtherKind ? { replaceOtherKind: true } : {}),
    name,
    kind,
    lifetime: more.lifetime ?? ('pinned' as L),
    owner: 'lxc',
    reusedBy: more.reusedBy ?? [],
    source,
    entry,
    purpose,
  };
}

const lb = { reusedBy: ['sock'] as const };

export const MAPS = [
  lxc(
    'weir_ipcache',
    'lpm_trie',
    'bpf/lib/ipcache.h',
    'IP prefix → {identity, tunnel endpoint}',
    'the peer identity of an address: pods /32 /128, node addresses → host (1), CIDR rules → CIDR identities; the underlay address of the node a remote prefix lives on (both routing modes: the auth node id; tunnel mode encapsulates towards it)',
  ),
  lxc(
    'weir_endpoints',
    'hash',
    'bpf/lib/endpoint.h',
    'host veth ifindex → {endpoint id, identity, flags}',
    'which endpoint a packet on a pod veth belongs to; ENDPOINT_F_FAIL_CLOSED, ENDPOINT_F_AUDIT (policy audit mode)',
  ),
  lxc(
    'weir_lxc',
    'hash',
    'bpf/lib/host_routing.h',
    'pod address → {host veth ifindex, pod MAC, host veth MAC}',
    'eBPF host routing: which local pod an address is, to apply its ingress policy and deliver into it (`bpf_redirect_peer`)',
  ),
  lxc(
    'weir_tunnel',
    'array',
    'bpf/lib/overlay.h',
    '0 → {VXLAN device ifindex}',
    "tunnel mode: the node's VXLAN device (external, collect_md) that pods' traffic to other nodes is redirected into; 0 = no tunnel (written by attachOverlay)",
  ),
  lxc(
    'weir_calls',
    'prog_array',
    'bpf/lib/stages.h',
    'stage → program',
    'tail calls of the staged datapath: the ingress entry of a local destination (`weir_to_local`) and the policy stages of a new connection (`weir_policy_egress`, `weir_policy_ingress`); every slot filled at every load before any pod program is attached',
  ),
  lxc(
    'weir_policy',
    'hash_of_maps',
    'bpf/lib/policy.h',
    'endpoint id → its policy map',
    'the outer map of the per-endpoint policy maps (`policy_<id>`)',
  ),
  {
    name: 'policy_<id>',
    kind: 'lpm_trie',
    lifetime: 'pinned',
    owner: 'loader',
    reusedBy: [],
    source: 'src/datapath/loader.ts',
    entry: '{identity, direction, protocol, port} prefix → {deny, auth, proxy port, rule cookie}',
    purpose: "one endpoint's policy entries (kernel name `weir_pol_<id>`), inside weir_policy",
  },
  lxc(
    'weir_auth',
    'hash',
    'bpf/lib/auth.h',
    '{source identity, destination identity, remote node (0: this node), auth type} → expiry',
    "mutual authentication (Cilium's cilium_auth_map): pairs an mTLS handshake with their SVIDs authenticated, until the earlier certificate expires; read for entries of `authentication: {mode: required}` rules",
  ),
  lxc(
    'weir_ct',
    'lru_hash',
    'bpf/lib/conntrack.h',
    'tuple + direction (+ CT_F_PROXY) → state, counters, cookie, lifetime, rev-NAT index, proxy flags and port',
    'connection tracking: established connections and replies pass without a policy lookup; connections of the node proxy (redirected, or its upstreams)',
  ),
  lxc(
    'weir_frag',
    'lru_hash',
    'bpf/lib/frag.h',
    '{addresses, IP id, protocol} → ports',
    'the L4 ports of a fragmented datagram, for its later fragments',
  ),
  lxc(
    'weir_metrics',
    'percpu_array',
    'bpf/lib/metrics.h',
    'reason << 2 | direction → {packets, bytes}',
    'forwards and drops by reason and direction (`weir bpf metrics list`); a pin of the earlier per-CPU hash is replaced at load (its counts restart)',
    { replaceOtherKind: true },
  ),
  lxc(
    'weir_events',
    'ringbuf',
    'bpf/lib/events.h',
    'flow events',
    'drops, policy verdicts and connection traces, read by the agent',
  ),
  lxc(
    'weir_events_lost',
    'percpu_array',
    'bpf/lib/events.h',
    '0 → count',
    'flow events that found no room in weir_events',
  ),
  lxc(
    'weir_events_wake',
    'percpu_array',
    'bpf/lib/events.h',
    '0 → time of the last reader wake-up',
    'at most one wake-up of the events reader per CPU and 5 ms (the others are submitted without one, read by its flush)',
    { lifetime: 'per-load' as const },
  ),
  lxc(
    'weir_lb_services',
    'hash',
    'bpf/lib/lb.h',
    '{frontend, slot} → slot 0: service metadata; 1..n: backend id',
    'service frontends and their backend slots',
    lb,
  ),
  lxc(
    'weir_lb_backends',
    'hash',
    'bpf/lib/lb.h',
    'backend id → address, port, state',
    'service backends',
    lb,
  ),
  lxc(
    'weir_lb_revnat',
    'hash',
    'bpf/lib/lb.h',
    'rev-NAT index → frontend address and port',
    'what a translated reply or socket shows as its peer',
    lb,
  ),
  lxc(
    'weir_lb_maglev',
    'hash_of_maps',
    'bpf/lib/lb.h',
    'rev-NAT index → Maglev table',
    'the outer map of the per-frontend Maglev tables',
    lb,
  ),
  {
    name: 'weir_mgl_<rev-nat index>',
    kind: 'array',
    lifetime: 'inner',
    owner: 'loader',
    reusedBy: [],
    source: 'src/datapath/maps/lb/index.ts',
    entry: '0 → M backend ids',
    purpose: "one frontend's Maglev table, held by weir_lb_maglev",
  },
  lxc(
    'weir_lb_affinity',
    'lru_hash',
    'bpf/lib/lb.h',
    '{client, rev-NAT index} → backend id, last used',
    'sessionAffinity: ClientIP',
    lb,
  ),
  lxc(
    'weir_lb_sk_rev',
    'sk_storage',
    'bpf/lib/lb.h',
    'socket → up to 4 {backend → frontend}',
    "recvmsg/getpeername of sockets the socket LB translated, in the socket's own storage (freed with it; an accepted connection has none: no lookup); replaces the cookie-keyed `weir_lb_reverse_sk` of earlier weirs, whose pin the load removes",
    lb,
  ),
  lxc(
    'weir_lb_ct',
    'lru_hash',
    'bpf/lib/lb_nat.h',
    'service tuple (as the pod sent it) → {backend id, rev-NAT index}',
    'the backend each connection translated at tc was given: it keeps it across agent restarts',
  ),
  lxc(
    'weir_lb_nat',
    'lru_hash',
    'bpf/lib/nodeport.h',
    '{tuple, direction} → translated tuple, backend id',
    'NodePort connections from outside: DNAT/SNAT (or DSR) both ways',
  ),
  lxc(
    'weir_flow_scratch',
    'percpu_array',
    'bpf/lib/stages.h',
    '0 → parsed packet, stage state',
    "the parsed packet of the running pod program and what its policy stage needs (off the BPF stack, which tail calls do not keep); pinned, so an entry program of an earlier load and the newest load's stage share it; a pin of another shape is replaced at load",
    { replaceOtherKind: true },
  ),
  lxc(
    'weir_refuse_scratch',
    'percpu_array',
    'bpf/lib/refuse.h',
    '0 → buffer',
    'builds the RST / ICMP answers refusing a service without backends (no room on the BPF stack)',
    { lifetime: 'per-load' as const },
  ),
] as const satisfies readonly MapDecl[];

export type MapName = (typeof MAPS)[number]['name'];
type ObjectMap = Extract<(typeof MAPS)[number], { owner: ObjectName }>;
/** A map an object declares (and the loader opens by name). */
export type ObjectMapName = ObjectMap['name'];
/** A map the loader pins by its own name (loader maps are pinned under their pattern). */
export type PinnedMapName = Extract<ObjectMap, { lifetime: 'pinned' }>['name'];

const decls: readonly MapDecl[] = MAPS;

/**
 * Pins of maps earlier weirs had and this one no longer has: the load removes them (programs an
 * earlier agent attached keep their map until they are replaced). weir_lb_reverse_sk: the socket
 * LB's {socket cookie, backend} → frontend hash, now socket storage (weir_lb_sk_rev); sockets it
 * translated before the upgrade show their backend as the peer afterwards.
 */
export const RETIRED_PINS: readonly string[] = ['weir_lb_reverse_sk'];

/** The declaration of `name` (a map name, or a loader map's pattern such as policy_<id>). */
export function mapDecl(name: string): MapDecl | undefined {
  return decls.find((m) => m.name === name);
}

/** Maps `object` creates and pins by name (lxc.o's pinned maps). */
export const pinnedMaps = (object: ObjectName): PinnedMapName[] =>
  decls.filter((m) => m.owner === object && m.lifetime === 'pinned').map((m) => m.name as PinnedMapName);

/** Maps `object` declares but takes from `owner` at load (sock.o's lb maps, from lxc.o). */
export const reusedMaps = (object: ObjectName): ObjectMapName[] =>
  decls.filter((m) => m.reusedBy.includes(object)).map((m) => m.name as ObjectMapName);

/** Every map `object`'s `.maps` section declares: what it owns and what it reuses. */
export const objectMaps = (object: ObjectName): ObjectMapName[] =>
  decls.filter((m) => m.owner === object || m.reusedBy.includes(object)).map((m) => m.name as ObjectMapName);

/** The pin of an endpoint's policy map (the catalogue's policy_<id>). */
export const policyPinName = (endpointId: number) => `policy_${endpointId}`;
export const POLICY_PIN = /^policy_(\d+)$/;

/** The catalogue's entry for a pin name (policy_<n> is the policy_<id> pattern). */
function declOfPin(name: string): MapDecl | undefined {
  return mapDecl(POLICY_PIN.test(name) ? 'policy_<id>' : name);
}

/**
 * Fails with ERR_DATAPATH_MAP_KIND unless `map` is of the kind the catalogue declares for `name`
 * (a pin replaced by a map of another type is never read as if it were the right one).
 */
export function checkKind(map: BpfMap, name: string, where: string): void {
  const decl = declOfPin(name);
  if (!decl)
    throw new WeirError('ERR_DATAPATH_MAP_UNKNOWN', `${name} is not a map of the catalogue`, {
      location: { file: where, object: name },
    });
  if (map.type !== MapType[decl.kind]) {
    const is = Object.entries(MapType).find(([, v]) => v === map.type)?.[0] ?? `type ${map.type}`;
    throw new WeirError(
      'ERR_DATAPATH_MAP_KIND',
      `map ${name} (${where}) is a ${is} map; weir's ${decl.name} is a ${decl.kind}`,
      { location: { file: where, object: name } },
    );
  }
}

/**
 * Opens the pin of map `name` (a pinned catalogue map, or policy_<id>) under `pinDir` and checks
 * its kind. The returned map owns its fd. A pin that cannot be opened fails with the kernel's
 * errno (BpfError, naming the path).
 */
export function openPinned(pinDir: string, name: PinnedMapName | `policy_${number}`): BpfMap {
  const path = join(pinDir, name);
  const map = BpfMap.fromPin(path);
  try {
    checkKind(map, name, path);
  } catch (err) {
    map.close();
    throw err;
  }
  return map;
}

/** The map table of docs/datapath.md (between its `maps` markers). */
export function mapTableMarkdown(): string {
  const lines = [
    '| map | kind | lifetime | created by | key → value | purpose |',
    '| --- | --- | --- | --- | --- | --- |',
  ];
  for (const m of decls) {
    const owner =
      m.owner === 'loader'
        ? `the loader (\`${m.source}\`)`
        : `${m.owner}.o (\`${m.source}\`)${m.reusedBy.length ? `; ${m.reusedBy.map((o) => `${o}.o`).join(', ')} reuses it` : ''}`;
    lines.push(
      `| \`${m.name}\` | ${m.kind.replace(/_/g, ' ')} | ${m.lifetime} | ${owner} | ${m.entry} | ${m.purpose} |`,
    );
  }
  return lines.join('\n');
}

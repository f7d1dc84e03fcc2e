// The agent's settings, declared once: for each its flag, default, whether it is persisted, how it
// is parsed and checked, and what it does. From this table derive the flags of `weir agent run`
// and `weir lab up` (src/cli), the persisted AgentSettings and their defaults (store.ts), the
// arguments `weir lab up` hands the agent (spawn.ts), the checks the agent makes before it starts
// (main.ts) and the settings table of docs/agent.md (settings.test.ts keeps it equal).
//
// Persisted settings are stored in the agent's state: a flag given once stays in force across
// restarts until given again (the pinned maps were sized or filled with them). The others apply to
// one run of the agent, with their default when not given.
import {
  DATAPATH_DEFAULTS,
  HOST_ROUTING_MODES,
  LB_MODES,
  type HostRouting,
  type LbMode,
} from '../datapath/loader.js';
import { LabelFilter } from '../identity/filter.js';
import { DEFAULT_RING_CAPACITY } from '../observe/ring.js';
import { DEFAULT_QUEUE_SIZE } from '../observe/stream.js';
import { defaultServiceCIDR, defaultServiceCIDRv6, parseServiceCIDR } from '../service/allocate.js';
import { checkMaglevSize, defaultMaglevSeed, maglevSeed, maglevSizes } from '../service/maglev.js';
import type { LbAlgorithm } from '../service/model.js';
import { checkTrustDomain } from '../auth/spiffe.js';
import { WeirError } from '../shared/errors.js';
import { proxyPortsOf } from './proxy-manager.js';

export interface Setting<K extends string = string, T = unknown, P extends boolean = boolean> {
  /** The property in AgentSettings / runAgent's options. */
  readonly key: K;
  readonly flag: `--${string}`;
  /** The flag's argument as --help shows it. */
  readonly arg: string;
  readonly default: T;
  /** The default as --help and the docs show it. */
  readonly defaultText: string;
  readonly persisted: P;
  /** For flags that take one of a few words. */
  readonly choices?: readonly string[];
  readonly description: string;
  /** The flag's text -> the value; bad text is ERR_CLI_OPTION naming the flag. */
  parse(text: string): T;
  /** The value -> the flag's text (what `weir lab up` passes on to `weir agent run`). */
  format(value: T): string;
  /** Refuses a bad value, whether from a flag or from the stored state (before the agent starts). */
  check(value: T): void;
}

/** The identity-label filter of `spec`, or ERR_AGENT_CONFIG naming the bad pattern. */
export function parseLabelFilter(spec: string): LabelFilter {
  try {
    return LabelFilter.parse(spec);
  } catch (err) {
    throw new WeirError('ERR_AGENT_CONFIG', `identity labels '${spec}': ${(err as Error).message}`, {
      location: { field: '--identity-labels' },
      cause: err,
    });
  }
}

const badOption = (flag: string, why: string) =>
  new WeirError('ERR_CLI_OPTION', why, { location: { field: flag } });

/** `[host]:port` -> host ('' = every address) and port; '' = off (undefined). */
export function parseServeAddr(v: string): { host: string; port: number } | undefined {
  if (v === '') return undefined;
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]*)):(\d{1,5})$/.exec(v);
  const port = Number(m?.[3]);
  if (!m || port < 1 || port > 65535)
    throw badOption('--prometheus-serve-addr', `must be [host]:port (e.g. :9962), not '${v}'`);
  return { host: m[1] ?? m[2] ?? '', port };
}

/** A setting; `const` keeps its key and persisted flag literal for the derived types. */
function setting<const K extends string, T, const P extends boolean>(
  s: Omit<Setting<K, T, P>, 'format' | 'check' | 'defaultText'> &
    Partial<Pick<Setting<K, T, P>, 'format' | 'check' | 'defaultText'>>,
): Setting<K, T, P> {
  return {
    format: (v: T) => String(v),
    check: () => undefined,
    defaultText: String(s.default),
    ...s,
  };
}

function int<const K extends string, const P extends boolean>(
  key: K,
  flag: `--${string}`,
  arg: string,
  persisted: P,
  dflt: number,
  min: number,
  max: number,
  description: string,
  more: Partial<Pick<Setting<K, number, P>, 'check' | 'defaultText'>> = {},
): Setting<K, number, P> {
  const inRange = (n: number) => Number.isInteger(n) && n >= min && n <= max;
  return setting({
    key,
    flag,
    arg,
    persisted,
    default: dflt,
    description,
    parse: (v: string) => {
      const n = Number(v);
      if (!/^\d+$/.test(v.trim()) || !inRange(n))
        throw badOption(flag, `must be an integer within ${min}..${max}, not '${v}'`);
      return n;
    },
    ...more,
    check: (n: number) => {
      if (!inRange(n)) throw badOption(flag, `must be an integer within ${min}..${max}, not ${n}`);
      more.check?.(n);
    },
  });
}

function onOff<const K extends string, const P extends boolean>(
  key: K,
  flag: `--${string}`,
  persisted: P,
  dflt: boolean,
  description: string,
): Setting<K, boolean, P> {
  return setting({
    key,
    flag,
    arg: '<on|off>',
    persisted,
    default: dflt,
    defaultText: dflt ? 'on' : 'off',
    choices: ['on', 'off'],
    description,
    parse: (v: string) => {
      if (v !== 'on' && v !== 'off') throw badOption(flag, `must be on or off, not '${v}'`);
      return v === 'on';
    },
    format: (v: boolean) => (v ? 'on' : 'off'),
  });
}

function oneOf<const K extends string, T extends string, const P extends boolean>(
  key: K,
  flag: `--${string}`,
  arg: string,
  persisted: P,
  choices: readonly T[],
  dflt: NoInfer<T>,
  description: string,
): Setting<K, T, P> {
  const check = (v: string): T => {
    if (!(choices as readonly string[]).includes(v))
      throw badOption(flag, `must be one of ${choices.join(', ')}, not '${v}'`);
    return v as T;
  };
  return setting<K, T, P>({
    key,
    flag,
    arg,
    persisted,
    default: dflt,
    choices,
    description,
    parse: check,
    check,
  });
}

export const SETTINGS = [
  int(
    'policyMapMax',
    '--policy-map-max',
    '<n>',
    true,
    DATAPATH_DEFAULTS.policyMapMax,
    256,
    65536,
    "entries of each endpoint's policy map (Cilium's --bpf-policy-map-max); a policy that does not fit fails the endpoint closed",
  ),
  setting({
    key: 'identityLabels',
    flag: '--identity-labels',
    arg: '<spec>',
    persisted: true,
    default: '',
    defaultText: "Cilium's label filter",
    description: "labels that make up identities, Cilium's syntax: 'k8s:app k8s:!job-name'",
    parse: (v: string) => v,
    check: (v: string) => {
      if (v) parseLabelFilter(v);
    },
  }),
  onOff('flowEvents', '--flow-events', true, true, 'observability: whether the datapath writes flow events'),
  onOff(
    'policyAuditMode',
    '--policy-audit-mode',
    true,
    false,
    "Cilium's policy audit mode for every endpoint of the node: what policy would deny passes and is reported as an AUDIT flow naming the rule (`weir endpoint config POD PolicyAuditMode=Enabled` does it per endpoint); off enforces at once",
  ),
  oneOf<'lbAlgorithm', LbAlgorithm, true>(
    'lbAlgorithm',
    '--lb-algorithm',
    '<name>',
    true,
    ['random', 'maglev'],
    'random',
    "how a service picks a backend for a new connection (Cilium's --bpf-lb-algorithm)",
  ),
  setting({
    key: 'maglevTableSize',
    flag: '--lb-maglev-table-size',
    arg: '<M>',
    persisted: true,
    default: DATAPATH_DEFAULTS.maglevTableSize as number,
    description: `entries of each Maglev table, one of ${maglevSizes.join(', ')}`,
    parse: (v: string) => checkMaglevSize(Number(v)),
    check: (v: number) => void checkMaglevSize(v),
  }),
  setting({
    key: 'maglevSeed',
    flag: '--lb-maglev-seed',
    arg: '<base64>',
    persisted: true,
    default: defaultMaglevSeed,
    defaultText: `Cilium's, ${defaultMaglevSeed}`,
    description: 'cluster-wide Maglev hash seed, 12 bytes in base64',
    parse: (v: string) => v,
    check: (v: string) => void maglevSeed(v),
  }),
  oneOf<'lbMode', LbMode, true>(
    'lbMode',
    '--lb-mode',
    '<mode>',
    true,
    LB_MODES,
    DATAPATH_DEFAULTS.lbMode,
    'NodePort from outside: the backend sees the node (snat) or the client (dsr)',
  ),
  oneOf<'hostRouting', HostRouting, true>(
    'hostRouting',
    '--host-routing',
    '<mode>',
    true,
    HOST_ROUTING_MODES,
    DATAPATH_DEFAULTS.hostRouting,
    "how forwarded pod traffic is routed: bpf (Cilium's eBPF host routing: into a local pod with bpf_redirect_peer, its ingress policy applied by the sender's program; off the node with bpf_redirect_neigh; the node's IP stack is skipped) or legacy (the node's stack routes)",
  ),
  onOff(
    'socketLB',
    '--socket-lb',
    true,
    true,
    "east-west services at the socket (on) or per packet at the pods' tc programs only (off; Cilium's --bpf-lb-sock)",
  ),
  setting({
    key: 'serviceCIDR',
    flag: '--service-cidr',
    arg: '<cidr>',
    persisted: true,
    default: defaultServiceCIDR,
    description: 'where ClusterIPs are allocated (an IPv4 prefix /8../30)',
    parse: (v: string) => v,
    check: (v: string) => void parseServiceCIDR(v),
  }),
  setting({
    key: 'serviceCIDRv6',
    flag: '--service-cidr-v6',
    arg: '<cidr|none>',
    persisted: true,
    default: defaultServiceCIDRv6,
    defaultText: `${defaultServiceCIDRv6}, none on a node without IPv6`,
    description: 'where IPv6 ClusterIPs are allocated (/108../126); none: an IPv4-only cluster',
    parse: (v: string) => (v === 'none' ? '' : v),
    format: (v: string) => v || 'none',
    check: (v: string) => {
      if (v) parseServiceCIDR(v, 'IPv6');
    },
  }),
  oneOf<'tofqdnsDnsRejectResponseCode', 'refused' | 'nameError', true>(
    'tofqdnsDnsRejectResponseCode',
    '--tofqdns-dns-reject-response-code',
    '<code>',
    true,
    ['refused', 'nameError'],
    'refused',
    "what the DNS proxy answers a query no DNS rule allows: REFUSED or NXDOMAIN (Cilium's --tofqdns-dns-reject-response-code)",
  ),
  setting({
    key: 'proxyPortRange',
    flag: '--proxy-port-range',
    arg: '<min-max>',
    persisted: true,
    default: '10000-20000',
    description:
      "the node proxy's ports (Cilium's proxy port range): its HTTP ingress listener on the first, its HTTP egress listener on the second, its DNS proxy (UDP and TCP) on the third",
    parse: (v: string) => {
      proxyPortsOf(v);
      return v;
    },
    check: (v: string) => void proxyPortsOf(v),
  }),
  int(
    'proxyWorkers',
    '--proxy-workers',
    '<n>',
    false,
    0,
    0,
    256,
    'threads of the node proxy serving HTTP, each with its own listeners in one SO_REUSEPORT group (0: one per CPU); they are one process, restarted as one',
    { defaultText: '0 (one per CPU)' },
  ),
  int(
    'tofqdnsMinTtl',
    '--tofqdns-min-ttl',
    '<seconds>',
    false,
    0,
    0,
    86400,
    "the shortest time an address learned from a DNS answer stays selectable by toFQDNs, whatever the record's TTL (Cilium's --tofqdns-min-ttl)",
  ),
  int(
    'tofqdnsEndpointMaxIpPerHostname',
    '--tofqdns-endpoint-max-ip-per-hostname',
    '<n>',
    false,
    50,
    1,
    10000,
    "addresses kept per endpoint and name; the oldest go first (Cilium's --tofqdns-endpoint-max-ip-per-hostname)",
  ),
  setting({
    key: 'trustDomain',
    flag: '--trust-domain',
    arg: '<domain>',
    persisted: true,
    default: 'cluster.local',
    description:
      "the SPIFFE trust domain of the identities' certificates (SVIDs: spiffe://<domain>/identity/<id>; Istio's TRUST_DOMAIN default)",
    parse: (v: string) => checkTrustDomain(v),
    check: (v: string) => void checkTrustDomain(v),
  }),
  int(
    'svidTtl',
    '--svid-ttl',
    '<seconds>',
    false,
    3600,
    20,
    90 * 86400,
    'lifetime of the SVIDs the agent issues for the identities in use; each is renewed at half its life, and an authenticated pair (weir auth list) expires with the earlier of its two certificates',
  ),
  oneOf<'encryption', 'none' | 'mtls', false>(
    'encryption',
    '--encryption',
    '<mode>',
    false,
    ['none', 'mtls'],
    'none',
    "pod TCP traffic to other nodes' pods (--routing tunnel only; refused with native): none (plain VXLAN) or mtls (inside HTTP/2 CONNECT tunnels over mutual TLS 1.3 between the nodes' proxies, one per identity pair, as Istio ambient's HBONE on port 15008; the node proxy's own upstreams to other nodes' pods too — egress L7, Gateway, mesh routes, DNS over TCP — the node's with its node SVID, judged remote-node; UDP and ICMP stay plain VXLAN)",
  ),
  int(
    'authListenerPort',
    '--auth-listener-port',
    '<port>',
    false,
    4250,
    1,
    65535,
    "the node's mutual-authentication listener (TLS 1.3, on the node IP; Cilium's --mesh-auth-mutual-listener-port)",
  ),
  int(
    'kvstoreLeaseTtl',
    '--kvstore-lease-ttl',
    '<seconds>',
    false,
    900,
    5,
    86400,
    "a cluster's node lease: the node's record, its reconciled revision and its identity references live this long without a renewal (Cilium's --kvstore-lease-ttl, 15 min); an agent whose lease ran out (etcd unreachable longer) registers again when it reaches etcd",
  ),
  int(
    'ctGcInterval',
    '--ct-gc-interval',
    '<seconds>',
    false,
    30,
    1,
    86400,
    'how often expired conntrack entries are removed',
  ),
  int(
    'flows',
    '--flows',
    '<n>',
    false,
    DEFAULT_RING_CAPACITY,
    1,
    65535,
    "flows kept for weir observe (Hubble's event buffer capacity)",
  ),
  int(
    'flowQueue',
    '--flow-queue',
    '<n>',
    false,
    DEFAULT_QUEUE_SIZE,
    1,
    1 << 20,
    'lines a following observer may have waiting before new ones are shed',
  ),
  setting({
    key: 'prometheusServeAddr',
    flag: '--prometheus-serve-addr',
    arg: '<[host]:port>',
    persisted: false,
    default: '',
    defaultText: "'' (off)",
    description:
      "also serve the agent's Prometheus metrics (GET /metrics) over TCP on this address of the node's network namespace, e.g. :9962 for all its addresses (Cilium's --prometheus-serve-addr)",
    parse: (v: string) => {
      parseServeAddr(v);
      return v;
    },
    check: (v: string) => void parseServeAddr(v),
  }),
  int(
    'eventsBufferBytes',
    '--events-buffer',
    '<bytes>',
    false,
    DATAPATH_DEFAULTS.eventsBufferBytes,
    4096,
    1 << 30,
    'bytes of the weir_events ring buffer, a power of 2 (a pinned ring of another size must be removed first)',
    {
      defaultText: '4194304 (4 MiB)',
      check: (n) => {
        if ((n & (n - 1)) !== 0) throw badOption('--events-buffer', `must be a power of 2, not ${n}`);
      },
    },
  ),
] as const;

type AnySetting = (typeof SETTINGS)[number];
type ValueOf<S> = S extends Setting<string, infer T, boolean> ? T : never;

/** Every setting's value, by key. */
export type AgentSettingValues = { [S in AnySetting as S['key']]: ValueOf<S> };
export type SettingKey = keyof AgentSettingValues;
/** The settings that must stay the same across restarts (stored in the agent's state). */
export type AgentSettings = { [S in Extract<AnySetting, { persisted: true }> as S['key']]: ValueOf<S> };

const all: readonly Setting[] = SETTINGS as readonly Setting[];

/** The persisted settings' defaults. */
export const defaultSettings = Object.fromEntries(
  all.filter((s) => s.persisted).map((s) => [s.key, s.default]),
) as AgentSettings;

/** Every setting's default (what the agent runs with when a flag is absent and nothing is stored). */
export const defaultValues = Object.fromEntries(all.map((s) => [s.key, s.default])) as AgentSettingValues;

export const isPersisted = (key: string): boolean => all.some((s) => s.key === key && s.persisted);

/** Refuses the first bad value (a stored one, or one given in code rather than by flag). */
export function checkSettings(values: Partial<AgentSettingValues>): void {
  for (const s of all) {
    const v = (values as Record<string, unknown>)[s.key];
    if (v !== undefined) s.check(v);
  }
}

/**
 * Refuses `--encryption mtls` with `--routing native` (fail closed): the datapath's redirect into
 * the proxies' tunnels (bpf/lib/overlay.h) is taken on the way into the VXLAN device, which native
 * routing has none of, so pod traffic between nodes would leave in plain text. ERR_AGENT_CONFIG
 * naming both settings; `weir lab up` and the agent check it before anything starts.
 */
export function checkEncryptionRouting(
  encryption: AgentSettingValues['encryption'] | undefined,
  routing: 'tunnel' | 'native' | undefined,
): void {
  if (encryption === 'mtls' && routing === 'native')
    throw new WeirError(
      'ERR_AGENT_CONFIG',
      "--encryption mtls needs --routing tunnel: with --routing native the pods' traffic between " +
        'nodes would not enter the mTLS tunnels and would leave in plain text (not supported yet)',
      { location: { field: '--encryption' } },
    );
}

/** The `weir agent run` arguments for the given settings (absent ones are left out). */
export function settingsArgv(values: Partial<AgentSettingValues>): string[] {
  return all.flatMap((s) => {
    const v = (values as Record<string, unknown>)[s.key];
    return v === undefined ? [] : [s.flag, s.format(v)];
  });
}

/** The settings table of docs/agent.md (between its `agent-settings` markers). */
export function settingsMarkdown(): string {
  return [
    '| flag | default | persisted | what it does |',
    '| --- | --- | --- | --- |',
    ...all
      .map((s) =>
        [`\`${s.flag} ${s.arg}\``, s.defaultText, s.persisted ? 'yes' : 'no', s.description]
          .map((cell) => ` ${cell.replace(/\|/g, '\\|')} `)
          .join('|'),
      )
      .map((row) => `|${row}|`),
  ].join('\n');
}

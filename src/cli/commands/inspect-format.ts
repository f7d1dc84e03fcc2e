// Pure formatting for the inspection commands (`weir endpoint|identity|bpf ...`): protocol and
// port text, policy map blocks merged back into the port ranges they came from, durations.
import type { Direction } from '../../datapath/direction.js';
import type { PolicyMapEntry } from '../../datapath/maps/policy/index.js';

const PROTO_NAMES: Readonly<Record<number, string>> = {
  0: 'ANY',
  1: 'ICMP',
  6: 'TCP',
  17: 'UDP',
  58: 'ICMPv6',
  132: 'SCTP',
};

/** 'TCP', 'UDP', ... for the protocols weir knows, else the IPPROTO number. */
export function protoName(proto: number): string {
  return PROTO_NAMES[proto] ?? String(proto);
}

/** The ports an aligned LPM block covers: 80/15 -> 80..81. */
export function blockRange(port: number, portPrefixLen: number): { port: number; endPort: number } {
  return { port, endPort: port + 2 ** (16 - portPrefixLen) - 1 };
}

/** One line of `weir bpf policy get`: a policy map entry, or adjacent blocks of one port range. */
export interface PolicyRow {
  policy: 'Allow' | 'Deny';
  direction: Direction;
  identity: number;
  protocol: number;
  /** First and last port; absent when the entry matches any port. */
  port?: number;
  endPort?: number;
  proxyPort: number;
  /** Cilium's AUTH TYPE column: 'mtls' for entries of `authentication: {mode: required}` rules. */
  authType: 'disabled' | 'mtls';
  cookie: number;
}

/** 'ANY' (any protocol), 'ANY/TCP' (any port), '80/TCP', '80-81/TCP'. */
export function portProtoText(r: Pick<PolicyRow, 'protocol' | 'port' | 'endPort'>): string {
  if (r.protocol === 0) return 'ANY';
  const proto = protoName(r.protocol);
  if (r.port === undefined) return `ANY/${proto}`;
  const end = r.endPort ?? r.port;
  return end === r.port ? `${r.port}/${proto}` : `${r.port}-${end}/${proto}`;
}

const directionOrder: Record<Direction, number> = { ingress: 0, egress: 1 };

/**
 * Policy map entries as rows: a port range the engine split into aligned blocks (1000-1999 is 8
 * keys) comes back as one row when the blocks are adjacent and carry the same verdict, proxy
 * port and rule cookie. Sorted by direction, identity, protocol, port.
 */
export function policyRows(entries: PolicyMapEntry[]): PolicyRow[] {
  const rows: PolicyRow[] = entries.map(({ key, value }) => ({
    policy: value.deny ? 'Deny' : 'Allow',
    direction: key.direction,
    identity: key.identity,
    protocol: key.protocol,
    ...(key.protocol !== 0 && key.portPrefixLen > 0 ? blockRange(key.port, key.portPrefixLen) : {}),
    proxyPort: value.proxyPort,
    authType: value.auth ? 'mtls' : 'disabled',
    cookie: value.cookie,
  }));
  rows.sort(
    (a, b) =>
      directionOrder[a.direction] - directionOrder[b.direction] ||
      a.identity - b.identity ||
      a.protocol - b.protocol ||
      (a.port ?? -1) - (b.port ?? -1),
  );
  const out: PolicyRow[] = [];
  for (const r of rows) {
    const last = out[out.length - 1];
    if (
      last &&
      last.endPort !== undefined &&
      r.port !== undefined &&
      last.endPort + 1 === r.port &&
      last.direction === r.direction &&
      last.identity === r.identity &&
      last.protocol === r.protocol &&
      last.policy === r.policy &&
      last.proxyPort === r.proxyPort &&
      last.authType === r.authType &&
      last.cookie === r.cookie
    )
      last.endPort = r.endPort;
    else out.push({ ...r });
  }
  return out;
}

/** Seconds as '45s', '5m3s', '6h0m', '2d3h' (two units at most, like kubectl's AGE). */
export function durationText(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}

/** 'ip:port', with IPv6 addresses in brackets. */
export function hostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

// The slice of a Hubble-like Flow (cilium-facts §4.2, JSON with proto field names) that the page
// shows, and how each part reads. Runs in the browser too, so it imports types only.
import type {
  FlowEndpoint as ObservedEndpoint,
  Flow as ObservedFlow,
  FlowPolicy,
} from '../../observe/flow.js';

/** Every field optional, so the page shows what a flow has and never trusts a field to exist. */
type DeepPartial<T> = T extends (infer U)[]
  ? DeepPartial<U>[]
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;

export type Flow = DeepPartial<ObservedFlow>;
export type FlowEndpoint = DeepPartial<ObservedEndpoint>;
type PolicyRef = DeepPartial<FlowPolicy>;

/** Where a peer sits on the map: a pod, or an outside peer (world, host, a CIDR, a bare IP). */
export interface Peer {
  key: string;
  label: string;
  /** Column title: the pod's namespace, or '' for peers outside any namespace. */
  namespace: string;
  kind: 'pod' | 'world' | 'host' | 'cidr' | 'ip';
}

function reserved(labels: string[] | undefined, name: string): boolean {
  return (labels ?? []).some((l) => l === `reserved:${name}`);
}

/** The peer on one side of a flow; `ip` is that side's address. */
export function peerOf(ep: FlowEndpoint | undefined, ip: string | undefined): Peer {
  if (ep?.pod_name) {
    const ns = ep.namespace ?? '';
    return { key: `${ns}/${ep.pod_name}`, label: ep.pod_name, namespace: ns, kind: 'pod' };
  }
  const labels = ep?.labels;
  if (reserved(labels, 'host') || reserved(labels, 'remote-node'))
    return { key: 'host', label: 'host', namespace: '', kind: 'host' };
  const cidr = (labels ?? []).find((l) => l.startsWith('cidr:'));
  if (cidr) return { key: cidr, label: cidr.slice('cidr:'.length), namespace: '', kind: 'cidr' };
  if (reserved(labels, 'world') || !ip) return { key: 'world', label: 'world', namespace: '', kind: 'world' };
  return { key: `ip:${ip}`, label: ip, namespace: '', kind: 'ip' };
}

/** 'FORWARDED' | 'DROPPED' | ... ('UNKNOWN' when absent). */
export function verdictOf(f: Flow): string {
  return f.verdict ?? 'VERDICT_UNKNOWN';
}

/** Whether a verdict means the packet did not get through. */
export function isDrop(verdict: string): boolean {
  return verdict === 'DROPPED' || verdict === 'ERROR';
}

/** '80/TCP', '53/UDP', 'ICMPv4 8/0', or '' when the flow has no L4. */
export function portProto(f: Flow): string {
  const l4 = f.l4 ?? {};
  if (l4.TCP) return `${l4.TCP.destination_port ?? '?'}/TCP`;
  if (l4.UDP) return `${l4.UDP.destination_port ?? '?'}/UDP`;
  if (l4.SCTP) return `${l4.SCTP.destination_port ?? '?'}/SCTP`;
  if (l4.ICMPv4) return `ICMPv4 ${l4.ICMPv4.type ?? '?'}/${l4.ICMPv4.code ?? 0}`;
  if (l4.ICMPv6) return `ICMPv6 ${l4.ICMPv6.type ?? '?'}/${l4.ICMPv6.code ?? 0}`;
  return '';
}

/** TCP flags as Hubble prints them ('SYN, ACK'), or ''. */
export function tcpFlags(f: Flow): string {
  const flags = f.l4?.TCP?.flags;
  if (!flags) return '';
  return Object.entries(flags)
    .filter(([, on]) => on)
    .map(([k]) => k)
    .join(', ');
}

function policyNames(refs: PolicyRef[] | undefined): string[] {
  return (refs ?? []).map((p) => (p.namespace ? `${p.namespace}/${p.name ?? '?'}` : (p.name ?? '?')));
}

/** The policies that decided the flow: allowed_by and denied_by, each 'ns/name'. */
export function policiesOf(f: Flow): { allowedBy: string[]; deniedBy: string[] } {
  return {
    allowedBy: [...policyNames(f.egress_allowed_by), ...policyNames(f.ingress_allowed_by)],
    deniedBy: [...policyNames(f.egress_denied_by), ...policyNames(f.ingress_denied_by)],
  };
}

/** 'HH:MM:SS.mmm' in local time, or the raw text when it does not parse. */
export function timeOf(f: Flow): string {
  if (!f.time) return '';
  const d = new Date(f.time);
  if (Number.isNaN(d.getTime())) return f.time;
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/** 'INGRESS' | 'EGRESS' | '' (unknown). */
export function directionOf(f: Flow): string {
  const d = f.traffic_direction ?? '';
  return d === 'TRAFFIC_DIRECTION_UNKNOWN' ? '' : d;
}

/** A table row: every cell as text, so the page and tests read the same strings. */
export interface FlowRow {
  time: string;
  /** The node that observed the flow (node_name). */
  node: string;
  source: string;
  destination: string;
  port: string;
  verdict: string;
  dropReason: string;
  policy: string;
  direction: string;
  type: string;
  summary: string;
}

function sideText(ep: FlowEndpoint | undefined, ip: string | undefined): string {
  const peer = peerOf(ep, ip);
  if (peer.kind === 'pod') return peer.key;
  return ip && peer.label !== ip ? `${ip} (${peer.label})` : (ip ?? peer.label);
}

/** An L7 flow's kind as Hubble names it: 'http-request', 'http-response'. */
export function l7Kind(f: Flow): string {
  return `${f.l7?.http ? 'http' : 'l7'}-${f.l7?.type === 'RESPONSE' ? 'response' : 'request'}`;
}

/** An L7 flow's HTTP exchange as the map summarises it: 'GET /public 200' (responses) or 'GET /public'. */
export function httpKey(f: Flow): string | undefined {
  const h = f.l7?.http;
  if (!h) return undefined;
  let path = h.url ?? '';
  const m = /^[a-z][a-z0-9+.-]*:\/\/[^/]*(\/[^?#]*)?/i.exec(path);
  if (m) path = m[1] ?? '/';
  else path = path.split('?')[0] ?? '';
  if (path.length > 32) path = `${path.slice(0, 31)}\u2026`;
  const code = h.code ? ` ${h.code}` : '';
  return `${h.method || '-'} ${path || '-'}${code}`;
}

export function flowRow(f: Flow): FlowRow {
  const { allowedBy, deniedBy } = policiesOf(f);
  const policy = [...allowedBy.map((n) => `allowed by ${n}`), ...deniedBy.map((n) => `denied by ${n}`)].join(
    '; ',
  );
  return {
    time: timeOf(f),
    node: f.node_name ?? '',
    source: sideText(f.source, f.IP?.source),
    destination: sideText(f.destination, f.IP?.destination),
    port: portProto(f),
    verdict: verdictOf(f),
    // An L7 flow has no drop reason; the proxy's detail says why it was denied or failed.
    dropReason:
      f.drop_reason_desc && f.drop_reason_desc !== 'DROP_REASON_UNKNOWN'
        ? f.drop_reason_desc
        : f.weir?.type === 'l7' && f.verdict !== 'FORWARDED'
          ? (f.weir.detail ?? '')
          : '',
    policy,
    direction: directionOf(f),
    type:
      f.weir?.type === 'l7' || f.Type === 'L7'
        ? l7Kind(f)
        : f.weir?.type
          ? `${f.weir.type}${f.weir.trace_subtype ? `:${f.weir.trace_subtype}` : ''}`
          : (f.Type ?? ''),
    summary: f.Summary ?? tcpFlags(f),
  };
}

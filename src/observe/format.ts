// How flows print: `hubble observe`'s compact line and a table row. Pure (the web UI uses it too).
import { hubbleDropText } from '../datapath/drop-reasons.js';
import { VERDICTS, type Flow, type FlowEndpoint, type FlowPolicy } from './flow.js';

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** "Nov 21 23:59:01.123" in local time, like hubble. */
export function shortTime(rfc3339: string): string {
  const d = new Date(rfc3339);
  if (Number.isNaN(d.getTime())) return rfc3339;
  return `${MONTHS[d.getMonth()]} ${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function ports(f: Flow): [number | undefined, number | undefined] {
  const p = f.l4?.TCP ?? f.l4?.UDP ?? f.l4?.SCTP;
  return [p?.source_port, p?.destination_port];
}

/** "ns/pod:port (ID:256)", or "ip:port (world)" for reserved peers. */
export function endpointText(ep: FlowEndpoint, ip: string | undefined, port: number | undefined): string {
  const name = ep.pod_name ? `${ep.namespace}/${ep.pod_name}` : (ip ?? '?');
  const host = port !== undefined && port !== 0 ? `${name}:${port}` : name;
  // Reserved identities (below 256) by name, like hubble; CIDR identities carry reserved:world too.
  const reserved = ep.identity < 256 ? ep.labels.find((l) => l.startsWith('reserved:')) : undefined;
  return `${host} (${reserved ? reserved.slice('reserved:'.length) : `ID:${ep.identity}`})`;
}

export function decidingPolicies(f: Flow): FlowPolicy[] {
  return [
    ...(f.ingress_denied_by ?? []),
    ...(f.egress_denied_by ?? []),
    ...(f.ingress_allowed_by ?? []),
    ...(f.egress_allowed_by ?? []),
  ];
}

/** Hubble's drop reason text, from the flow's enum name (the datapath's table of drop reasons). */
export function dropText(f: Flow): string {
  const desc = f.drop_reason_desc ?? '';
  return hubbleDropText(desc) ?? (desc || `drop reason ${f.drop_reason ?? '?'}`);
}

/**
 * How a policy verdict matched, as Hubble names it: a rule decided ("L3-L4"); allowed with no rule,
 * because no policy selects the endpoint in that direction ("all"); denied with no rule ("none").
 */
export function verdictMatch(f: Flow): 'L3-L4' | 'all' | 'none' {
  if (decidingPolicies(f).length > 0) return 'L3-L4';
  return f.verdict === 'DROPPED' || f.verdict === 'AUDIT' ? 'none' : 'all';
}

/** "http-request", "http-response" (Hubble's name of an L7 flow's kind). */
export function l7Type(f: Flow): string {
  const kind = f.l7?.type === 'RESPONSE' ? 'response' : 'request';
  return `${f.l7?.http ? 'http' : 'l7'}-${kind}`;
}

/** The event part: "policy-verdict:L3-L4 INGRESS ALLOWED", "drop EGRESS DROPPED (Policy denied)". */
export function eventText(f: Flow): string {
  const dir = f.traffic_direction === 'TRAFFIC_DIRECTION_UNKNOWN' ? '' : `${f.traffic_direction} `;
  switch (f.weir.type) {
    case 'policy-verdict': {
      const match = verdictMatch(f);
      const word = VERDICTS[f.verdict].word;
      const audit =
        f.verdict === 'AUDIT' ? ` (policy would deny: ${f.drop_reason_desc ?? 'POLICY_DENIED'})` : '';
      return `policy-verdict:${match} ${dir}${word}${audit}${f.proxy_port ? ` to proxy port ${f.proxy_port}` : ''}`;
    }
    case 'l7':
      // Hubble's GetFlowType: "http-request" / "http-response", then the verdict (no direction).
      return `${l7Type(f)} ${f.verdict}`;
    case 'drop':
      return `drop ${dir}DROPPED (${dropText(f)})`;
    case 'trace': {
      const w = f.weir;
      const counts =
        w.trace_subtype === 'close'
          ? ` [${w.packets_fwd ?? 0} pkts/${w.bytes_fwd ?? 0} B -> ${w.packets_rev ?? 0} pkts/${w.bytes_rev ?? 0} B${w.expired ? ', expired' : ''}]`
          : '';
      return `trace:${w.trace_subtype ?? 'open'} ${dir}FORWARDED${counts}`;
    }
  }
}

/** One `hubble observe` compact line. Replies print responder <- initiator order reversed like hubble. */
export function compactLine(f: Flow): string {
  const [sport, dport] = ports(f);
  const src = endpointText(f.source, f.IP?.source, sport);
  const dst = endpointText(f.destination, f.IP?.destination, dport);
  const pair = f.is_reply ? `${dst} <- ${src}` : `${src} -> ${dst}`;
  const policies = decidingPolicies(f).map((p) => p.rule);
  const by = policies.length > 0 ? ` by ${policies.join(', ')}` : '';
  // --encryption mtls: the connection crosses the nodes inside the proxies' mTLS tunnel.
  const enc = f.IP?.encrypted ? ' [mTLS encrypted]' : '';
  return `${shortTime(f.time)}: ${pair} ${eventText(f)}${enc} (${f.Summary})${by}`;
}

export interface FlowRow {
  time: string;
  source: string;
  destination: string;
  type: string;
  verdict: string;
  summary: string;
  policy: string;
}

export function flowRow(f: Flow): FlowRow {
  const [sport, dport] = ports(f);
  return {
    time: shortTime(f.time),
    source: endpointText(f.source, f.IP?.source, sport),
    destination: endpointText(f.destination, f.IP?.destination, dport),
    type: f.weir.trace_subtype
      ? `trace:${f.weir.trace_subtype}`
      : f.weir.type === 'l7'
        ? l7Type(f)
        : f.weir.type,
    // An L7 flow has no drop reason: the proxy answered 403 (its detail says why).
    verdict:
      f.verdict === 'DROPPED'
        ? f.weir.type === 'l7'
          ? `DROPPED${f.weir.detail ? ` (${f.weir.detail})` : ''}`
          : `DROPPED (${dropText(f)})`
        : f.verdict,
    summary: f.IP?.encrypted ? `${f.Summary} [mTLS encrypted]` : f.Summary,
    policy: decidingPolicies(f)
      .map((p) => p.rule)
      .join(', '),
  };
}

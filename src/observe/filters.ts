// Flow filters with `hubble observe` semantics, as a pure function from a query to a predicate.
// Shared by the agent (GET /v1/flows), the CLI (flags -> query string) and the web UI, so this file
// imports nothing from Node.
//
// How flags combine (Hubble's filter tracker): a flow passes when it matches ANY filter of the
// allow-list; inside a filter every field must match, and a field matches when ANY of its values
// does (repeating a flag ORs). A two-sided flag (--pod, --namespace, --label, --identity, --ip,
// --port) builds two filters, one where the value is on the source side and one where it is on the
// destination side; --from-*/--to-* flags add their side to both filters. So
// `--pod app/a --port 80` is (source app/a AND source port 80) OR (destination app/a AND
// destination port 80), exactly as `hubble observe`.
//
// L7 flags (Hubble's pkg/hubble/filters/http.go): --http-status "200" or a prefix "4+", "20+"
// (responses only); --http-method (case-insensitive); --http-path (RE2, unanchored, against the
// URL's path without the query); --http-url (RE2, unanchored, against the whole URL);
// --http-header "name:value". Like Hubble, they refuse a --type that leaves out l7 events.
import { RE2JS } from 're2js';
import { parseIP, parsePrefix, prefixContains, type Prefix } from '../identity/cidr.js';
import { reservedIdentities } from '../identity/reserved.js';
import { WeirError } from '../shared/errors.js';
import { verdictNames, type Flow, type FlowEndpoint, type FlowL4 } from './flow.js';

/** Filter flags (and query parameter names): each may repeat. */
export const FILTER_FLAGS = [
  'pod',
  'from-pod',
  'to-pod',
  'namespace',
  'from-namespace',
  'to-namespace',
  'label',
  'from-label',
  'to-label',
  'identity',
  'from-identity',
  'to-identity',
  'ip',
  'from-ip',
  'to-ip',
  'port',
  'from-port',
  'to-port',
  'protocol',
  'verdict',
  'type',
  'traffic-direction',
  'http-status',
  'http-method',
  'http-path',
  'http-url',
  'http-header',
  'dns-query',
] as const;
export type FilterFlag = (typeof FILTER_FLAGS)[number];

export interface FlowQuery {
  filters: Partial<Record<FilterFlag, string[]>>;
  /** RFC 3339 or a duration back from now ("5m", "1h30m", "90s"). */
  since?: string;
  until?: string;
  /** Newest N stored flows (Hubble's default 20 when neither follow nor since is given). */
  last?: number;
  follow?: boolean;
}

export const DEFAULT_LAST = 20;

const bad = (field: string, message: string) =>
  new WeirError('ERR_OBSERVE_FILTER', message, { location: { object: 'flow filter', field } });

const VERDICTS: readonly string[] = verdictNames;
const PROTOCOLS = ['tcp', 'udp', 'sctp', 'icmp', 'icmpv4', 'icmpv6', 'http', 'dns'];
const NO_SPLIT = new Set<string>(['http-path', 'http-url', 'http-header', 'dns-query']);
const HTTP_FLAGS: readonly FilterFlag[] = [
  'http-status',
  'http-method',
  'http-path',
  'http-url',
  'http-header',
  'dns-query',
];
const TYPES: Record<string, string[]> = {
  drop: [],
  'policy-verdict': [],
  trace: ['open', 'close'],
  l7: [],
};

/** A time bound: RFC 3339, or a duration before `now` ("5m", "2h", "1h30m", "500ms"). Epoch ms. */
export function parseTime(field: string, value: string, now: number): number {
  const rel = /^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$/.exec(value);
  if (rel && value !== '') {
    const [, h = '0', m = '0', s = '0', ms = '0'] = rel;
    return now - (((Number(h) * 60 + Number(m)) * 60 + Number(s)) * 1000 + Number(ms));
  }
  const t = Date.parse(value);
  if (!/^\d{4}-\d{2}-\d{2}T/.test(value) || Number.isNaN(t))
    throw bad(field, `--${field} '${value}' is neither RFC 3339 time nor a duration like 5m or 1h30m`);
  return t;
}

/** Flow time (RFC 3339 with ns) as epoch ms. */
export function flowTimeMs(flow: Flow): number {
  return Date.parse(flow.time);
}

/** Query parameters of GET /v1/flows (the flag names) -> query; bad values throw ERR_OBSERVE_FILTER. */
export function parseFlowQuery(params: URLSearchParams): FlowQuery {
  const q: FlowQuery = { filters: {} };
  const known = new Set<string>([...FILTER_FLAGS, 'since', 'until', 'last', 'follow']);
  for (const key of params.keys()) if (!known.has(key)) throw bad(key, `unknown flow filter '${key}'`);
  for (const flag of FILTER_FLAGS) {
    // Selectors, regexes and header values may hold commas: those flags take one value each.
    const whole = flag.endsWith('label') || NO_SPLIT.has(flag);
    const values = params.getAll(flag).flatMap((v) => (whole ? [v] : v.split(',')));
    if (values.length > 0) q.filters[flag] = values;
  }
  const since = params.get('since');
  const until = params.get('until');
  if (since) q.since = since;
  if (until) q.until = until;
  const last = params.get('last');
  if (last !== null) {
    const n = Number(last);
    if (!Number.isInteger(n) || n < 0)
      throw bad('last', `--last must be a non-negative integer, not '${last}'`);
    q.last = n;
  }
  const follow = params.get('follow');
  if (follow !== null) q.follow = follow === '1' || follow === 'true';
  compileFilter(q); // validates every value
  return q;
}

/** The inverse of parseFlowQuery (the CLI builds its request with it). */
export function toSearchParams(q: FlowQuery): URLSearchParams {
  const p = new URLSearchParams();
  for (const flag of FILTER_FLAGS) for (const v of q.filters[flag] ?? []) p.append(flag, v);
  if (q.since) p.set('since', q.since);
  if (q.until) p.set('until', q.until);
  if (q.last !== undefined) p.set('last', String(q.last));
  if (q.follow) p.set('follow', '1');
  return p;
}

type Side = 'source' | 'destination';
type Match = (flow: Flow) => boolean;

/** One filter of the allow-list: every criterion must match. */
interface SideFilter {
  all: Match[];
}

// ---- value parsers (each validates, then returns a matcher of one side's endpoint or the flow)

function podMatcher(field: string, value: string, defaultNs: string): (ep: FlowEndpoint) => boolean {
  if (value === '') throw bad(field, `--${field} needs a pod name`);
  const slash = value.indexOf('/');
  const ns = slash >= 0 ? value.slice(0, slash) : defaultNs;
  const prefix = slash >= 0 ? value.slice(slash + 1) : value;
  return (ep) => ep.namespace === ns && (ep.pod_name ?? '').startsWith(prefix);
}

function namespaceMatcher(field: string, value: string): (ep: FlowEndpoint) => boolean {
  if (value === '' || value.includes('/')) throw bad(field, `--${field} '${value}' is not a namespace name`);
  return (ep) => ep.namespace === value;
}

interface LabelReq {
  key: string;
  op: '=' | '!=' | 'exists' | '!exists';
  value?: string;
}

/** A label selector "k=v,k2,!k3,k4!=v": requirements AND. Keys may carry a source ("k8s:app"). */
export function parseSelector(field: string, value: string): LabelReq[] {
  const reqs: LabelReq[] = [];
  for (const part of value.split(',').map((s) => s.trim())) {
    const m = /^(!?)([A-Za-z0-9_./:-]+?)(?:(!=|==|=)(.*))?$/.exec(part);
    if (!m || (m[1] && m[3])) throw bad(field, `--${field} '${value}': '${part}' is not a label requirement`);
    const [, not, key = '', op, v] = m;
    if (op) reqs.push({ key, op: op === '!=' ? '!=' : '=', value: v ?? '' });
    else reqs.push({ key, op: not ? '!exists' : 'exists' });
  }
  return reqs;
}

function labelMatcher(field: string, value: string): (ep: FlowEndpoint) => boolean {
  const reqs = parseSelector(field, value);
  return (ep) => {
    const labels = ep.labels.map((l) => {
      const colon = l.indexOf(':');
      const eq = l.indexOf('=', colon + 1);
      const src = colon >= 0 ? l.slice(0, colon) : '';
      const key = l.slice(colon + 1, eq >= 0 ? eq : undefined);
      return { src, key, value: eq >= 0 ? l.slice(eq + 1) : '' };
    });
    const find = (key: string) => {
      const colon = key.indexOf(':');
      return colon >= 0
        ? labels.filter((l) => l.src === key.slice(0, colon) && l.key === key.slice(colon + 1))
        : labels.filter((l) => l.key === key);
    };
    return reqs.every((r) => {
      const found = find(r.key);
      if (r.op === 'exists') return found.length > 0;
      if (r.op === '!exists') return found.length === 0;
      const eq = found.some((l) => l.value === r.value);
      return r.op === '=' ? eq : !eq;
    });
  };
}

function identityMatcher(field: string, value: string): (ep: FlowEndpoint) => boolean {
  let id: number | undefined = /^\d+$/.test(value) ? Number(value) : undefined;
  if (id === undefined)
    for (const [n, name] of reservedIdentities) if (name === value.replace(/^reserved:/, '')) id = n;
  if (id === undefined)
    throw bad(
      field,
      `--${field} '${value}' is neither an identity number nor a reserved name (world, host, ...)`,
    );
  const want = id;
  return (ep) => ep.identity === want;
}

function ipMatcher(field: string, value: string): (ip: string) => boolean {
  const prefix = parsePrefix(value, { allowBareIP: true });
  if (!prefix) throw bad(field, `--${field} '${value}' is not an IP address or CIDR`);
  return (ip) => {
    const addr = parseIP(ip);
    if (!addr) return false;
    const host: Prefix = { family: addr.family, addr: addr.addr, len: addr.family === 4 ? 32 : 128 };
    return prefixContains(prefix, host);
  };
}

function portsOf(l4: FlowL4 | undefined): { source_port: number; destination_port: number } | undefined {
  return l4?.TCP ?? l4?.UDP ?? l4?.SCTP;
}

function portMatcher(field: string, value: string): (port: number | undefined) => boolean {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 0 || n > 65535)
    throw bad(field, `--${field} '${value}' is not a port number`);
  return (p) => p === n;
}

function protocolMatcher(field: string, value: string): Match {
  const v = value.toLowerCase();
  if (!PROTOCOLS.includes(v)) throw bad(field, `--${field} '${value}' is not one of ${PROTOCOLS.join(', ')}`);
  return (f) => {
    const l4 = f.l4;
    if (v === 'tcp') return !!l4?.TCP;
    if (v === 'udp') return !!l4?.UDP;
    if (v === 'sctp') return !!l4?.SCTP;
    if (v === 'icmpv6') return !!l4?.ICMPv6;
    if (v === 'icmpv4') return !!l4?.ICMPv4;
    // Hubble: an L7 protocol matches the flows whose Layer7 record is of it.
    if (v === 'http') return !!f.l7?.http;
    if (v === 'dns') return !!f.l7?.dns;
    return !!l4?.ICMPv4 || !!l4?.ICMPv6;
  };
}

function verdictMatcher(field: string, value: string): Match {
  const v = value.toUpperCase();
  if (!VERDICTS.includes(v)) throw bad(field, `--${field} '${value}' is not one of ${VERDICTS.join(', ')}`);
  return (f) => f.verdict === v;
}

function typeMatcher(field: string, value: string): Match {
  const [type = '', sub] = value.split(':');
  const subs = TYPES[type];
  if (!subs) throw bad(field, `--${field} '${value}' is not one of ${Object.keys(TYPES).join(', ')}`);
  if (sub !== undefined && !subs.includes(sub))
    throw bad(
      field,
      `--${field} '${value}': '${type}' has ${subs.length ? `subtypes ${subs.join(', ')}` : 'no subtypes'}` +
        (type === 'l7' ? ' (HTTP flows: --protocol http)' : ''),
    );
  return (f) => f.weir.type === type && (sub === undefined || f.weir.trace_subtype === sub);
}

function directionMatcher(field: string, value: string): Match {
  const v = value.toUpperCase();
  if (v !== 'INGRESS' && v !== 'EGRESS') throw bad(field, `--${field} '${value}' is not ingress or egress`);
  return (f) => f.traffic_direction === v;
}

/** Hubble's --http-status: "404" (a full code) or "4+", "40+" (a prefix of the 3-digit code). */
function httpStatusMatcher(field: string, value: string): Match {
  let test: (code: string) => boolean;
  if (/^[1-5][0-9]{2}$/.test(value)) test = (c) => c === value;
  else if (/^[1-5][0-9]?\+$/.test(value)) {
    const prefix = value.slice(0, -1);
    test = (c) => c.startsWith(prefix);
  } else throw bad(field, `--${field} '${value}' is neither a status code (403) nor a prefix like 4+ or 50+`);
  return (f) => {
    const code = f.l7?.http?.code ?? 0;
    return code !== 0 && test(String(code).padStart(3, '0'));
  };
}

function httpMethodMatcher(field: string, value: string): Match {
  if (value === '') throw bad(field, `--${field} needs a method`);
  const want = value.toUpperCase();
  return (f) => {
    const m = f.l7?.http?.method ?? '';
    return m !== '' && m.toUpperCase() === want;
  };
}

/** An unanchored RE2 expression (Go's regexp, as Hubble compiles it). */
function re2(field: string, value: string): RE2JS {
  try {
    return RE2JS.compile(value);
  } catch (err) {
    throw bad(field, `--${field} '${value}' is not a regular expression: ${(err as Error).message}`);
  }
}

/** The path of an absolute URL, percent-decoded (Go's url.ParseRequestURI().Path); undefined if invalid. */
export function urlPath(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  try {
    return decodeURIComponent(u.pathname);
  } catch {
    return u.pathname;
  }
}

function httpPathMatcher(field: string, value: string): Match {
  const re = re2(field, value);
  return (f) => {
    const url = f.l7?.http?.url ?? '';
    if (url === '') return false;
    const path = urlPath(url);
    return path !== undefined && re.test(path);
  };
}

/** Hubble's --dns-query: RE2, unanchored, against the query name (with its trailing dot). */
function dnsQueryMatcher(field: string, value: string): Match {
  const re = re2(field, value);
  return (f) => {
    const q = f.l7?.dns?.query;
    return q !== undefined && re.test(q);
  };
}

function httpUrlMatcher(field: string, value: string): Match {
  const re = re2(field, value);
  return (f) => {
    const url = f.l7?.http?.url ?? '';
    return url !== '' && re.test(url);
  };
}

/** "name:value" (Hubble's form; a space after the colon is allowed): that exact header value. */
function httpHeaderMatcher(field: string, value: string): Match {
  const colon = value.indexOf(':');
  const name = value.slice(0, colon).trim().toLowerCase();
  if (colon <= 0 || name === '') throw bad(field, `--${field} '${value}' is not name:value`);
  const want = value.slice(colon + 1).replace(/^[ \t]+/, '');
  return (f) => (f.l7?.http?.headers ?? []).some((h) => h.key.toLowerCase() === name && h.value === want);
}

const anyOf =
  <T>(ms: ((x: T) => boolean)[]) =>
  (x: T) =>
    ms.some((m) => m(x));

/** A matcher of one endpoint as a matcher of a flow's source or destination. */
const onEndpoint =
  (matcher: (field: string, v: string) => (ep: FlowEndpoint) => boolean) => (field: string, v: string) => {
    const m = matcher(field, v);
    return (fl: Flow, side: Side) => m(fl[side]);
  };

/**
 * The predicate of a query (filters and since/until; `last` and `follow` are for the reader).
 * Throws ERR_OBSERVE_FILTER naming the flag of a bad value.
 */
export function compileFilter(q: FlowQuery, now: number = Date.now()): (flow: Flow) => boolean {
  const f = q.filters;
  const vals = (flag: FilterFlag) => f[flag] ?? [];
  const hasPod = vals('pod').length + vals('from-pod').length + vals('to-pod').length > 0;
  // With pods, --namespace is their namespace (hubble's habit); alone, it filters by namespace.
  const nsList = vals('namespace');
  if (hasPod && nsList.length > 1) throw bad('namespace', 'with --pod, give one --namespace');
  const defaultNs = hasPod ? (nsList[0] ?? 'default') : 'default';

  const sideFlags: {
    both: FilterFlag;
    from: FilterFlag;
    to: FilterFlag;
    make: (field: string, v: string) => (f: Flow, side: Side) => boolean;
  }[] = [
    {
      both: 'pod',
      from: 'from-pod',
      to: 'to-pod',
      make: onEndpoint((fd, v) => podMatcher(fd, v, defaultNs)),
    },
    { both: 'namespace', from: 'from-namespace', to: 'to-namespace', make: onEndpoint(namespaceMatcher) },
    { both: 'label', from: 'from-label', to: 'to-label', make: onEndpoint(labelMatcher) },
    { both: 'identity', from: 'from-identity', to: 'to-identity', make: onEndpoint(identityMatcher) },
    {
      both: 'ip',
      from: 'from-ip',
      to: 'to-ip',
      make: (field, v) => {
        const m = ipMatcher(field, v);
        return (fl, side) => (fl.IP ? m(side === 'source' ? fl.IP.source : fl.IP.destination) : false);
      },
    },
    {
      both: 'port',
      from: 'from-port',
      to: 'to-port',
      make: (field, v) => {
        const m = portMatcher(field, v);
        return (fl, side) => {
          const p = portsOf(fl.l4);
          return m(side === 'source' ? p?.source_port : p?.destination_port);
        };
      },
    },
  ];

  const left: SideFilter = { all: [] };
  let right: SideFilter | undefined;
  const sidesOf = () => (right ? [left, right] : [left]);
  // Two-sided flags first: they decide whether there is a right-hand filter.
  for (const s of sideFlags) {
    if (s.both === 'namespace' && hasPod) continue;
    const values = vals(s.both);
    if (values.length === 0) continue;
    right ??= { all: [] };
    const ms = values.map((v) => s.make(s.both, v));
    left.all.push((fl) => ms.some((m) => m(fl, 'source')));
    right.all.push((fl) => ms.some((m) => m(fl, 'destination')));
  }
  for (const s of sideFlags) {
    for (const [flag, side] of [
      [s.from, 'source'],
      [s.to, 'destination'],
    ] as const) {
      const values = vals(flag);
      if (values.length === 0) continue;
      const ms = values.map((v) => s.make(flag, v));
      for (const filter of sidesOf()) filter.all.push((fl) => ms.some((m) => m(fl, side)));
    }
  }
  const flowFlags: [FilterFlag, (field: string, v: string) => Match][] = [
    ['protocol', protocolMatcher],
    ['verdict', verdictMatcher],
    ['type', typeMatcher],
    ['traffic-direction', directionMatcher],
    ['http-status', httpStatusMatcher],
    ['http-method', httpMethodMatcher],
    ['http-path', httpPathMatcher],
    ['http-url', httpUrlMatcher],
    ['http-header', httpHeaderMatcher],
    ['dns-query', dnsQueryMatcher],
  ];
  // Hubble: HTTP filters need the type filter to let l7 events through.
  const types = vals('type');
  if (types.length > 0 && !types.some((t) => t.split(':')[0] === 'l7'))
    for (const flag of HTTP_FLAGS)
      if (vals(flag).length > 0)
        throw bad(flag, `--${flag} matches L7 flows only: add --type l7 (or drop --type ${types.join(',')})`);
  for (const [flag, make] of flowFlags) {
    const values = vals(flag);
    if (values.length === 0) continue;
    const m = anyOf(values.map((v) => make(flag, v)));
    for (const filter of sidesOf()) filter.all.push(m);
  }

  const since = q.since ? parseTime('since', q.since, now) : undefined;
  const until = q.until ? parseTime('until', q.until, now) : undefined;
  const filters = sidesOf();
  const empty = filters.every((x) => x.all.length === 0);
  return (flow) => {
    if (since !== undefined || until !== undefined) {
      const t = flowTimeMs(flow);
      if (since !== undefined && t < since) return false;
      if (until !== undefined && t > until) return false;
    }
    return empty || filters.some((x) => x.all.every((m) => m(flow)));
  };
}

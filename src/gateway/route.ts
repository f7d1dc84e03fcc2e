// Serving one request from a compiled table, pure: which entry matches (the table is already in
// precedence order), which backend the weights pick, and what the filters make of the request —
// the redirect to answer, or the request to send upstream and the response headers to change.
// The proxy runs it per request; `weir route trace` and the corpus replay run it offline.
import { compileL7Regex } from '../policy/l7/regex.js';
import type { CORSFilter, HeaderModifier, HTTPRouteMatch, PathModifier } from './api.js';
import {
  hostMatches,
  type CompiledBackend,
  type CompiledMirror,
  type GatewayPortTable,
  type ListenerTable,
  type MeshPortTable,
  type TableEntry,
} from './compile.js';

/** A request as the router sees it: header names lower-case, values as received. */
export interface RouteRequest {
  method: string;
  /** Path and query, as sent (origin form). */
  path: string;
  /** The Host header (or :authority), possibly with a port. */
  host: string;
  headers: Record<string, string[]>;
  /** http or https: what the client used (for redirects). */
  scheme?: string;
  /** Mesh: the namespace of the client pod. */
  fromNamespace?: string;
}

export interface HeaderOps {
  set: [string, string][];
  add: [string, string][];
  remove: string[];
}

export type RouteDecision =
  | { kind: 'no-route'; status: 404; reason: string; listener?: string }
  | { kind: 'redirect'; status: number; location: string; entry: TableEntry; listener?: string }
  | {
      kind: 'error';
      status: 500;
      reason: string;
      entry: TableEntry;
      backend?: CompiledBackend;
      listener?: string;
    }
  | { kind: 'cors-preflight'; status: 200; headers: [string, string][]; entry: TableEntry; listener?: string }
  | {
      kind: 'forward';
      entry: TableEntry;
      listener?: string;
      backend: CompiledBackend;
      /** The request to send upstream (path rewritten, Host rewritten, headers modified). */
      request: { method: string; path: string; host: string; headers: Record<string, string[]> };
      /** Applied to the upstream's response, in this order. */
      responseHeaders: HeaderOps[];
      /** CORS headers to add to the response of an actual (non-preflight) cross-origin request. */
      corsHeaders: [string, string][];
      mirrors: CompiledMirror[];
    };

const splitPath = (p: string): [string, string] => {
  const q = p.indexOf('?');
  return q < 0 ? [p, ''] : [p.slice(0, q), p.slice(q)];
};

function pathMatches(m: HTTPRouteMatch['path'], path: string): boolean {
  switch (m.type) {
    case 'Exact':
      return path === m.value;
    case 'PathPrefix': {
      const prefix = m.value.length > 1 && m.value.endsWith('/') ? m.value.slice(0, -1) : m.value;
      if (prefix === '/') return path.startsWith('/');
      return path === prefix || path.startsWith(`${prefix}/`);
    }
    case 'RegularExpression':
      return compileL7Regex(m.value).test(path);
  }
}

function queryValue(query: string, name: string): string | undefined {
  if (!query) return undefined;
  for (const part of query.slice(1).split('&')) {
    const eq = part.indexOf('=');
    const k = eq < 0 ? part : part.slice(0, eq);
    let dk: string;
    try {
      dk = decodeURIComponent(k.replace(/\+/g, ' '));
    } catch {
      dk = k;
    }
    if (dk !== name) continue;
    const v = eq < 0 ? '' : part.slice(eq + 1);
    try {
      return decodeURIComponent(v.replace(/\+/g, ' '));
    } catch {
      return v;
    }
  }
  return undefined;
}

export function headerValue(headers: Record<string, string[]>, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return v === undefined || v.length === 0 ? undefined : v.join(',');
}

/** Whether one match of a rule takes the request. */
export function matchTakes(m: HTTPRouteMatch, req: RouteRequest): boolean {
  const [path, query] = splitPath(req.path);
  if (!pathMatches(m.path, path)) return false;
  if (m.method !== undefined && m.method !== req.method) return false;
  for (const h of m.headers) {
    const v = headerValue(req.headers, h.name);
    if (v === undefined) return false;
    if (h.type === 'Exact' ? v !== h.value : !compileL7Regex(h.value).test(v)) return false;
  }
  for (const q of m.queryParams) {
    const v = queryValue(query, q.name);
    if (v === undefined) return false;
    if (q.type === 'Exact' ? v !== q.value : !compileL7Regex(q.value).test(v)) return false;
  }
  return true;
}

/** The host without its port, lower-case. */
export function bareHost(host: string): string {
  const h = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d+$/, '');
  return h.toLowerCase();
}

function entryTakes(e: TableEntry, req: RouteRequest, host: string): boolean {
  if (e.hostnames.length > 0 && !e.hostnames.some((h) => hostMatches(h, host))) return false;
  return matchTakes(e.match, req);
}

/** The listener of a Gateway port that takes `host`: the most specific hostname that matches. */
export function pickListener(table: GatewayPortTable, host: string): ListenerTable | undefined {
  return table.listeners.find((l) => hostMatches(l.hostname, bareHost(host)));
}

/**
 * The entries of a listener that can take `host`, in their order: built once per table (a
 * snapshot's arrays do not change) — for each exact hostname a route names, the entries whose
 * hostnames match it or that have none; for any other host, the entries with a wildcard or no
 * hostname. Entries left out could not match that host, so precedence is unchanged, and a request
 * scans only its own host's routes (1 000 routes on distinct hosts: 1 entry, not 1 000).
 */
const hostIndex = new WeakMap<TableEntry[], { byHost: Map<string, TableEntry[]>; rest: TableEntry[] }>();

function candidates(entries: TableEntry[], host: string): TableEntry[] {
  let ix = hostIndex.get(entries);
  if (!ix) {
    const rest = entries.filter(
      (e) => e.hostnames.length === 0 || e.hostnames.some((h) => h.startsWith('*.')),
    );
    const byHost = new Map<string, TableEntry[]>();
    for (const e of entries)
      for (const h of e.hostnames)
        if (!h.startsWith('*.') && !byHost.has(h))
          byHost.set(
            h,
            entries.filter((x) => x.hostnames.length === 0 || x.hostnames.some((y) => hostMatches(y, h))),
          );
    ix = { byHost, rest };
    hostIndex.set(entries, ix);
  }
  return ix.byHost.get(host) ?? ix.rest;
}

/** Serves a request that came to a Gateway's port. */
export function routeGateway(
  table: GatewayPortTable,
  req: RouteRequest,
  random: () => number = Math.random,
): RouteDecision {
  const l = pickListener(table, req.host);
  if (!l)
    return {
      kind: 'no-route',
      status: 404,
      reason: `no listener of ${table.gateway}:${table.port} takes host ${bareHost(req.host)}`,
    };
  const d = routeEntries(candidates(l.entries, bareHost(req.host)), req, {
    listenerPort: table.port,
    random,
  });
  return { ...d, listener: l.listener };
}

/**
 * Serves a request to a Service with routes (GAMMA): the routes of the client's own namespace
 * (consumer routes) when it has any for this Service, else the Service's own (producer) routes.
 */
export function routeMesh(
  table: MeshPortTable,
  req: RouteRequest,
  random: () => number = Math.random,
): RouteDecision {
  const consumer = table.entries.filter(
    (e) => e.fromNamespace !== undefined && e.fromNamespace === req.fromNamespace,
  );
  const entries = consumer.length > 0 ? consumer : table.entries.filter((e) => e.fromNamespace === undefined);
  return routeEntries(entries, req, { listenerPort: table.port, random });
}

export function routeEntries(
  entries: TableEntry[],
  req: RouteRequest,
  opts: { listenerPort: number; random: () => number },
): RouteDecision {
  const host = bareHost(req.host);
  const entry = entries.find((e) => entryTakes(e, req, host));
  if (!entry)
    return {
      kind: 'no-route',
      status: 404,
      reason: `no route matches ${req.method} ${host}${splitPath(req.path)[0]}`,
    };
  const [path, query] = splitPath(req.path);

  const cors = entry.filters.find((f) => f.type === 'CORS');
  const origin = headerValue(req.headers, 'origin');
  if (
    cors &&
    req.method === 'OPTIONS' &&
    origin !== undefined &&
    headerValue(req.headers, 'access-control-request-method') !== undefined
  )
    return { kind: 'cors-preflight', status: 200, headers: corsPreflight(cors.cors, origin, req), entry };

  for (const f of entry.filters) {
    if (f.type !== 'RequestRedirect') continue;
    const r = f.requestRedirect;
    const scheme = r.scheme ?? req.scheme ?? 'http';
    const hostname = r.hostname ?? host;
    let port: number | undefined = r.port;
    if (port === undefined) port = r.scheme !== undefined ? defaultPort(scheme) : opts.listenerPort;
    const portText = port === undefined || port === defaultPort(scheme) ? '' : `:${port}`;
    const newPath = r.path ? modifyPath(r.path, entry.match, path) : path;
    return {
      kind: 'redirect',
      status: r.statusCode,
      location: `${scheme}://${hostname}${portText}${newPath}${query}`,
      entry,
    };
  }

  if (entry.backends.length === 0)
    return { kind: 'error', status: 500, reason: 'the rule has no backendRefs', entry };
  const total = entry.backends.reduce((n, b) => n + b.weight, 0);
  if (total === 0)
    return { kind: 'error', status: 500, reason: 'every backendRef of the rule has weight 0', entry };
  let pick = opts.random() * total;
  let backend = entry.backends[entry.backends.length - 1] as CompiledBackend;
  for (const b of entry.backends) {
    if (b.weight === 0) continue;
    if (pick < b.weight) {
      backend = b;
      break;
    }
    pick -= b.weight;
  }
  if (backend.invalid) return { kind: 'error', status: 500, reason: backend.invalid, entry, backend };

  const headers: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) headers[k] = [...v];
  let upstreamHost = req.host;
  let upstreamPath = req.path;
  const responseHeaders: HeaderOps[] = [];
  const apply = (filters: TableEntry['filters']) => {
    for (const f of filters) {
      if (f.type === 'RequestHeaderModifier') modifyHeaders(headers, f.requestHeaderModifier);
      else if (f.type === 'ResponseHeaderModifier') responseHeaders.push(headerOps(f.responseHeaderModifier));
      else if (f.type === 'URLRewrite') {
        if (f.urlRewrite.hostname !== undefined) upstreamHost = f.urlRewrite.hostname;
        if (f.urlRewrite.path) upstreamPath = modifyPath(f.urlRewrite.path, entry.match, path) + query;
      }
    }
  };
  apply(entry.filters);
  apply(backend.filters);
  return {
    kind: 'forward',
    entry,
    backend,
    request: { method: req.method, path: upstreamPath, host: upstreamHost, headers },
    responseHeaders,
    corsHeaders: cors && origin !== undefined ? corsActual(cors.cors, origin) : [],
    mirrors: entry.mirrors.filter((m) => m.fraction >= 1 || opts.random() < m.fraction),
  };
}

const defaultPort = (scheme: string) => (scheme === 'https' ? 443 : scheme === 'http' ? 80 : undefined);

/** A path after ReplaceFullPath, or ReplacePrefixMatch of the rule's PathPrefix match. */
export function modifyPath(mod: PathModifier, match: HTTPRouteMatch, path: string): string {
  if (mod.type === 'ReplaceFullPath') return mod.replaceFullPath ?? '/';
  const replacement = mod.replacePrefixMatch ?? '/';
  if (match.path.type !== 'PathPrefix') return replacement;
  const prefix =
    match.path.value.endsWith('/') && match.path.value.length > 1
      ? match.path.value.slice(0, -1)
      : match.path.value;
  let rest = prefix === '/' ? path : path.slice(prefix.length);
  let out: string;
  if (replacement.endsWith('/') && rest.startsWith('/')) rest = rest.slice(1);
  if (rest === '') out = replacement;
  else if (replacement.endsWith('/') || rest.startsWith('/')) out = replacement + rest;
  else out = `${replacement}/${rest}`;
  if (out.length > 1 && out.endsWith('/') && !path.endsWith('/') && !replacement.endsWith('/'))
    out = out.slice(0, -1);
  return out === '' ? '/' : out;
}

export function headerOps(m: HeaderModifier): HeaderOps {
  return {
    set: m.set.map((h) => [h.name.toLowerCase(), h.value]),
    add: m.add.map((h) => [h.name.toLowerCase(), h.value]),
    remove: m.remove.map((h) => h.toLowerCase()),
  };
}

/** Gateway API header modifier semantics: set replaces, add appends a value, remove deletes. */
export function applyHeaderOps(headers: Record<string, string[]>, ops: HeaderOps): void {
  for (const [k, v] of ops.set) headers[k] = [v];
  for (const [k, v] of ops.add) headers[k] = [...(headers[k] ?? []), v];
  for (const k of ops.remove) delete headers[k];
}

function modifyHeaders(headers: Record<string, string[]>, m: HeaderModifier): void {
  applyHeaderOps(headers, headerOps(m));
}

function originAllowed(cors: CORSFilter, origin: string): boolean {
  return cors.allowOrigins.some((o) => {
    if (o === '*') return true;
    if (!o.includes('*')) return o === origin;
    const [scheme, rest] = o.split('://') as [string, string | undefined];
    const [os, orest] = origin.split('://') as [string, string | undefined];
    if (rest === undefined || orest === undefined || scheme !== os) return false;
    return rest.startsWith('*.')
      ? orest.endsWith(rest.slice(1)) && orest.length > rest.length - 1
      : rest === orest;
  });
}

function corsPreflight(cors: CORSFilter, origin: string, req: RouteRequest): [string, string][] {
  if (!originAllowed(cors, origin)) return [];
  const out: [string, string][] = [];
  const wildcardOrigin = cors.allowOrigins.includes('*') && !cors.allowCredentials;
  out.push(['access-control-allow-origin', wildcardOrigin ? '*' : origin]);
  if (cors.allowCredentials) out.push(['access-control-allow-credentials', 'true']);
  const reqMethod = headerValue(req.headers, 'access-control-request-method') ?? '';
  const methods = cors.allowMethods.includes('*')
    ? cors.allowCredentials
      ? [reqMethod]
      : ['*']
    : cors.allowMethods;
  if (methods.length > 0) out.push(['access-control-allow-methods', methods.join(', ')]);
  const reqHeaders = headerValue(req.headers, 'access-control-request-headers');
  const allowHeaders = cors.allowHeaders.includes('*')
    ? cors.allowCredentials
      ? (reqHeaders ?? '')
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : ['*']
    : cors.allowHeaders;
  if (allowHeaders.length > 0) out.push(['access-control-allow-headers', allowHeaders.join(', ')]);
  if (cors.exposeHeaders.length > 0)
    out.push(['access-control-expose-headers', cors.exposeHeaders.join(', ')]);
  out.push(['access-control-max-age', String(cors.maxAge)]);
  return out;
}

function corsActual(cors: CORSFilter, origin: string): [string, string][] {
  if (!originAllowed(cors, origin)) return [];
  const out: [string, string][] = [
    ['access-control-allow-origin', cors.allowOrigins.includes('*') && !cors.allowCredentials ? '*' : origin],
  ];
  if (cors.allowCredentials) out.push(['access-control-allow-credentials', 'true']);
  if (cors.exposeHeaders.length > 0)
    out.push(['access-control-expose-headers', cors.exposeHeaders.join(', ')]);
  return out;
}

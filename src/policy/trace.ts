// `weir policy trace`: would a new connection from A to B on port/protocol be allowed, and by
// which rule? Answered by lookup() over the computed entries of both ends (egress of the source
// endpoint, ingress of the destination endpoint), exactly as the datapath would decide. With an
// HTTP request (method, path, headers, host), a side whose entry redirects to the node proxy also
// judges the request with the proxy's own matcher (judgeHttp) against that port's L7 policy, as
// the proxy would: the HTTP rule that allows it, or the 403 it would get.
import { lookupIpcache, parsePrefix, formatPrefix } from '../identity/cidr.js';
import { IDENTITY_HOST, IDENTITY_WORLD } from '../identity/reserved.js';
import { WeirError } from '../shared/errors.js';
import type { RuleRef } from './api/types.js';
import type { EngineInput, EngineOutput } from './engine.js';
import { DIR_EGRESS, DIR_INGRESS, protocolNumbers, type PolicyMapEntry } from './entry.js';
import { DropReason } from '../datapath/drop-reasons.js';
import { judgeHttp, type HttpVerdictReason } from './l7/http-match.js';
import type { HttpRule } from './l7/types.js';
import { lookup } from './lookup.js';

export interface TraceRequest {
  /** "ns/pod", an IP, a CIDR, or an entity ("world", "host"). */
  from: string;
  to: string;
  port: number;
  protocol: 'TCP' | 'UDP' | 'SCTP';
  /** An HTTP request to judge where the connection goes through the node proxy. */
  http?: TraceHttpRequest;
}

export interface TraceHttpRequest {
  method: string;
  /** The request target: path and query, as sent. */
  path: string;
  /** The Host header; default: the destination's address (with :port unless 80). */
  host?: string;
  /** "Name: value" fields. */
  headers?: string[];
}

/** How the node proxy would judge the request on one side. */
export interface HttpTrace {
  /** The request as judged (host filled in). */
  request: { method: string; path: string; host: string; headers: string[] };
  verdict: 'allowed' | 'denied';
  /** http_rule / l4_allow (allowed); no_rule_matched / no_rule_set / no_policy (denied). */
  reason: HttpVerdictReason;
  /** Allowed: the policy rule whose L7 rules allowed it. */
  rule?: RuleRef;
  /** Allowed by an HTTP rule: its index in that rule's toPorts[].rules.http, and the rule. */
  httpRule?: { index: number; rule: HttpRule };
  /** Denied: the policy rules holding the port's L7 rules (what to change). */
  candidates?: RuleRef[];
  /** Denied: the status the proxy answers. */
  code?: 403;
}

export interface TracePeer {
  name: string;
  identity: number;
  endpointId?: number;
}

export interface DirectionTrace {
  enforced: boolean;
  verdict: 'allowed' | 'denied' | 'default-deny' | 'not-enforced';
  /** The rule the verdict comes from (absent for default-deny and not-enforced). */
  rule?: RuleRef;
  entry?: PolicyMapEntry;
  /** Drop code the datapath would report (181 deny, 133 default deny). */
  dropCode?: number;
  /** Allowed through the node proxy: the listener the connection is redirected to (L7 rules). */
  proxyPort?: number;
  /**
   * Allowed by a rule with `authentication: {mode: required}`: the datapath lets it through only
   * once the two identities authenticated (weir_auth), else it drops with 189.
   */
  authRequired?: true;
  /** With an HTTP request and a redirected connection: the proxy's verdict on the request. */
  http?: HttpTrace;
  note?: string;
}

export interface TraceResult {
  allowed: boolean;
  from: TracePeer;
  to: TracePeer;
  port: number;
  protocol: string;
  egress: DirectionTrace;
  ingress: DirectionTrace;
  /**
   * toFQDNs: the names the DNS proxy learned the destination address for (what a toFQDNs rule
   * selects it by); the agent adds when each entry expires and whose lookup taught it.
   */
  fqdn?: { name: string; endpointId?: number; expiresAt?: number; ttl?: number }[];
}

export interface TraceContext {
  input: EngineInput;
  output: EngineOutput;
}

export function resolvePeer(ctx: TraceContext, spec: string): TracePeer {
  if (spec === 'world') return { name: 'world', identity: IDENTITY_WORLD };
  if (spec === 'host') return { name: 'host', identity: IDENTITY_HOST };
  const ep =
    ctx.input.endpoints.find((e) => `${e.namespace}/${e.pod}` === spec) ??
    ctx.input.endpoints.find((e) => e.ips.includes(spec));
  if (ep) {
    const pol = ctx.output.endpoints.get(ep.id);
    return { name: `${ep.namespace}/${ep.pod}`, identity: pol?.identity ?? 0, endpointId: ep.id };
  }
  const prefix = parsePrefix(spec, { allowBareIP: true });
  if (!prefix)
    throw new WeirError(
      'ERR_POLICY_TRACE_PEER',
      `'${spec}' is not a known pod (ns/pod), an IP, a CIDR, 'world' or 'host'`,
    );
  const exact = ctx.output.ipcache.find((e) => e.prefix === formatPrefix(prefix));
  const hit = exact ?? lookupIpcache(ctx.output.ipcache, formatPrefix(prefix).split('/')[0] ?? '');
  return { name: spec, identity: hit?.identity ?? IDENTITY_WORLD };
}

function httpProblem(message: string, field: string): WeirError {
  return new WeirError('ERR_POLICY_TRACE_HTTP', message, { location: { object: 'HTTP request', field } });
}

/** Checks an HTTP request of a trace (it comes from the CLI or the API body). */
export function checkHttpRequest(h: unknown): TraceHttpRequest {
  const r = h as Partial<TraceHttpRequest> | null;
  if (typeof r !== 'object' || r === null) throw httpProblem('the HTTP request must be an object', 'http');
  const method = r.method;
  if (typeof method !== 'string' || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(method))
    throw httpProblem(`'${String(method)}' is not an HTTP method (e.g. GET)`, '--http-method');
  const path = r.path;
  // Visible characters only (no spaces, no control characters).
  const visible = (v: string) => /^[!-~\u0080-\uffff]+$/.test(v);
  if (typeof path !== 'string' || !visible(path))
    throw httpProblem(
      `'${String(path)}' is not a request target (e.g. /api/v1?x=1, no spaces)`,
      '--http-path',
    );
  const out: TraceHttpRequest = { method, path };
  if (r.host !== undefined) {
    if (typeof r.host !== 'string' || (r.host !== '' && !visible(r.host)))
      throw httpProblem(`'${String(r.host)}' is not a host (e.g. svc:8080)`, '--http-host');
    out.host = r.host;
  }
  if (r.headers !== undefined) {
    if (!Array.isArray(r.headers))
      throw httpProblem('headers must be a list of "Name: value"', '--http-header');
    for (const h of r.headers as unknown[]) {
      const text = typeof h === 'string' ? h : '';
      const colon = text.indexOf(':');
      const name = colon > 0 ? text.slice(0, colon).trim() : '';
      // A field value: visible characters, spaces and tabs (no CR, LF, NUL).
      if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name) || !/^[\t -~\u0080-\uffff]*$/.test(text))
        throw httpProblem(`'${String(h)}' is not "Name: value"`, '--http-header');
    }
    out.headers = r.headers as string[];
  }
  return out;
}

/** "Name: value" fields -> the flat [name, value, ...] list the matcher reads. */
function flatHeaders(headers: readonly string[]): string[] {
  return headers.flatMap((h) => {
    const colon = h.indexOf(':');
    return [h.slice(0, colon).trim(), h.slice(colon + 1).trim()];
  });
}

/** The proxy's verdict on `http` for the redirected port `port` of endpoint `ep`, from `peer`. */
function judgeSide(
  ctx: TraceContext,
  endpointId: number,
  peer: TracePeer,
  dir: 1 | 2,
  port: number,
  http: TraceHttpRequest & { host: string },
): HttpTrace {
  const pol = ctx.output.endpoints.get(endpointId);
  const ports = dir === DIR_INGRESS ? pol?.l7?.ingress : pol?.l7?.egress;
  // The proxy finds a port's policy by the exact destination port (src/proxy/snapshot.ts).
  const portPolicy = ports?.find((p) => p.port === port);
  const headers = http.headers ?? [];
  const v = judgeHttp(portPolicy, peer.identity, {
    method: http.method,
    path: http.path,
    host: http.host,
    headers: flatHeaders(headers),
  });
  const request = { method: http.method, path: http.path, host: http.host, headers: [...headers] };
  if (v.allowed) {
    const rule = v.origin ? ctx.output.cookies.get(v.origin.cookie) : undefined;
    const set = portPolicy?.ruleSets.find((rs) => rs.origin === v.origin);
    const httpRule = v.httpRule !== undefined ? set?.http?.[v.httpRule] : undefined;
    return {
      request,
      verdict: 'allowed',
      reason: v.reason,
      ...(rule ? { rule } : {}),
      ...(httpRule && v.httpRule !== undefined ? { httpRule: { index: v.httpRule, rule: httpRule } } : {}),
    };
  }
  // The rules whose HTTP rules were tried for this peer (none apply: every rule of the port).
  const applicable = (portPolicy?.ruleSets ?? [])
    .filter((rs) => !rs.identities || rs.identities.includes(peer.identity))
    .map((rs) => rs.origin);
  const candidates: RuleRef[] = [];
  for (const o of applicable.length > 0 ? applicable : v.origins) {
    const ref = ctx.output.cookies.get(o.cookie);
    if (ref && !candidates.includes(ref)) candidates.push(ref);
  }
  return { request, verdict: 'denied', reason: v.reason, candidates, code: 403 };
}

function side(
  ctx: TraceContext,
  ep: TracePeer,
  peer: TracePeer,
  dir: 1 | 2,
  proto: number,
  port: number,
  http?: TraceHttpRequest & { host: string },
): DirectionTrace {
  if (ep.endpointId === undefined)
    return { enforced: false, verdict: 'not-enforced', note: 'not a local endpoint: no policy applies here' };
  const pol = ctx.output.endpoints.get(ep.endpointId);
  if (!pol) return { enforced: false, verdict: 'not-enforced', note: 'endpoint has no computed policy' };
  const enforced = dir === DIR_INGRESS ? pol.ingressEnforced : pol.egressEnforced;
  const res = lookup(pol.entries, peer.identity, dir, proto, port);
  const entry = res.entry ? { entry: res.entry } : {};
  if (pol.failClosed)
    return {
      enforced: true,
      verdict: 'default-deny',
      dropCode: pol.error?.code === 'ERR_DATAPATH_NO_POLICY_MAP' ? DropReason.EP_NOT_READY : res.code,
      note: pol.error?.message ?? 'endpoint failed closed',
    };
  if (res.verdict === 'drop') return { enforced, verdict: 'default-deny', dropCode: res.code };
  const rule = res.entry ? ctx.output.cookies.get(res.entry.cookie) : undefined;
  if (res.verdict === 'deny')
    return { enforced, verdict: 'denied', dropCode: res.code, ...entry, ...(rule ? { rule } : {}) };
  const proxy = {
    ...(res.entry?.proxyPort ? { proxyPort: res.entry.proxyPort } : {}),
    ...(res.entry?.auth ? { authRequired: true as const } : {}),
  };
  const l7 =
    http && res.entry?.proxyPort ? { http: judgeSide(ctx, ep.endpointId, peer, dir, port, http) } : {};
  if (!enforced)
    return { enforced, verdict: 'not-enforced', ...entry, ...proxy, ...(rule ? { rule } : {}), ...l7 };
  return { enforced, verdict: 'allowed', ...entry, ...proxy, ...(rule ? { rule } : {}), ...l7 };
}

/** The Host a client sends to `to` on `port` by default: its address, with the port unless 80. */
function defaultHost(ctx: TraceContext, to: TracePeer, spec: string, port: number): string {
  const ep =
    to.endpointId !== undefined ? ctx.input.endpoints.find((e) => e.id === to.endpointId) : undefined;
  let addr = ep?.ips[0] ?? spec.split('/')[0] ?? spec;
  if (addr.includes(':')) addr = `[${addr}]`;
  return port === 80 ? addr : `${addr}:${port}`;
}

export function trace(ctx: TraceContext, req: TraceRequest): TraceResult {
  const proto = protocolNumbers[req.protocol];
  if (proto === undefined || proto === 0)
    throw new WeirError('ERR_POLICY_TRACE_PROTOCOL', `invalid protocol '${req.protocol}'`);
  if (!Number.isInteger(req.port) || req.port < 1 || req.port > 65535)
    throw new WeirError('ERR_POLICY_TRACE_PORT', `port ${req.port} is out of range (1-65535)`);
  const from = resolvePeer(ctx, req.from);
  const to = resolvePeer(ctx, req.to);
  let http: (TraceHttpRequest & { host: string }) | undefined;
  if (req.http !== undefined) {
    if (req.protocol !== 'TCP')
      throw httpProblem(`an HTTP request needs a TCP port, not ${req.protocol}`, '--port');
    const h = checkHttpRequest(req.http);
    http = { ...h, host: h.host ?? defaultHost(ctx, to, req.to, req.port) };
  }
  const egress = side(ctx, from, to, DIR_EGRESS, proto, req.port, http);
  const ingress = side(ctx, to, from, DIR_INGRESS, proto, req.port, http);
  const ok = (d: DirectionTrace) =>
    (d.verdict === 'allowed' || d.verdict === 'not-enforced') && d.http?.verdict !== 'denied';
  const names = (ctx.input.fqdns ?? []).filter((f) => f.ips.includes(req.to)).map((f) => ({ name: f.name }));
  return {
    allowed: ok(egress) && ok(ingress),
    from,
    to,
    port: req.port,
    protocol: req.protocol,
    egress,
    ingress,
    ...(names.length ? { fqdn: names } : {}),
  };
}

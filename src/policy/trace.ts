// `weir policy trace`: would a new connection from A to B on port/protocol be allowed, and by
// which rule? Answered by lookup() over the computed entries of both ends (egress of the source
// endpoint, ingress of the destination endpoint), exactly as the datapath would decide.
import { lookupIpcache, parsePrefix, formatPrefix } from '../identity/cidr.js';
import { IDENTITY_HOST, IDENTITY_WORLD } from '../identity/reserved.js';
import { WeirError } from '../shared/errors.js';
import type { RuleRef } from './api/types.js';
import type { EngineInput, EngineOutput } from './engine.js';
import { DIR_EGRESS, DIR_INGRESS, protocolNumbers, type PolicyMapEntry } from './entry.js';
import { DropReason } from '../datapath/drop-reasons.js';
import { lookup } from './lookup.js';

export interface TraceRequest {
  /** "ns/pod", an IP, a CIDR, or an entity ("world", "host"). */
  from: string;
  to: string;
  port: number;
  protocol: 'TCP' | 'UDP' | 'SCTP';
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

function side(
  ctx: TraceContext,
  ep: TracePeer,
  peer: TracePeer,
  dir: 1 | 2,
  proto: number,
  port: number,
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
  const proxy = res.entry?.proxyPort ? { proxyPort: res.entry.proxyPort } : {};
  if (!enforced) return { enforced, verdict: 'not-enforced', ...entry, ...proxy, ...(rule ? { rule } : {}) };
  return { enforced, verdict: 'allowed', ...entry, ...proxy, ...(rule ? { rule } : {}) };
}

export function trace(ctx: TraceContext, req: TraceRequest): TraceResult {
  const proto = protocolNumbers[req.protocol];
  if (proto === undefined || proto === 0)
    throw new WeirError('ERR_POLICY_TRACE_PROTOCOL', `invalid protocol '${req.protocol}'`);
  if (!Number.isInteger(req.port) || req.port < 1 || req.port > 65535)
    throw new WeirError('ERR_POLICY_TRACE_PORT', `port ${req.port} is out of range (1-65535)`);
  const from = resolvePeer(ctx, req.from);
  const to = resolvePeer(ctx, req.to);
  const egress = side(ctx, from, to, DIR_EGRESS, proto, req.port);
  const ingress = side(ctx, to, from, DIR_INGRESS, proto, req.port);
  const ok = (d: DirectionTrace) => d.verdict === 'allowed' || d.verdict === 'not-enforced';
  return {
    allowed: ok(egress) && ok(ingress),
    from,
    to,
    port: req.port,
    protocol: req.protocol,
    egress,
    ingress,
  };
}

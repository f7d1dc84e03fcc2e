// The Gateway API conformance corpus (conformance/gateway-api): reading topology.json and the case
// files, the objects a case applies (GatewayClass placeholder filled with weir's class), the
// expected route statuses judged against the compiler's, and an offline replay of the probes
// through the compiler and router (what the backend would see and what the client would get,
// without traffic). Probes whose outcome depends on the backend's behaviour over time (timeouts,
// retries, mirror logs, WebSocket, h2c framing) are left to the runner with real traffic.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WeirError } from '../shared/errors.js';
import { weirController } from './api.js';
import { compile, type Compiled, type Condition } from './compile.js';
import { applyHeaderOps, routeGateway, routeMesh, type RouteDecision, type RouteRequest } from './route.js';
import { worldOf, type WorldObject } from './world.js';

export const weirClassName = 'weir';

export interface CorpusProbe {
  id: string;
  name?: string;
  from: string;
  to: { gateway?: string; port: number; host?: string; podIPOf?: string };
  request: {
    method?: string;
    path?: string;
    host?: string;
    headers?: Record<string, string>;
    protocol?: string;
    scheme?: string;
    service?: string;
    metadata?: Record<string, string>;
    authority?: string;
    backendSetResponseHeaders?: Record<string, string>;
    followRedirects?: boolean;
  } & Record<string, unknown>;
  expect: Record<string, unknown>;
  templates?: Record<string, string>;
}

export interface CorpusCase {
  id: string;
  name: string;
  mode: 'gateway' | 'mesh';
  comparison: string;
  manifests: Record<string, unknown>[];
  setup?: Record<string, unknown>[];
  routeStatus?: {
    route: string;
    routeKind?: string;
    parentRef?: { group?: string; kind?: string; namespace?: string; name: string };
    conditions?: { type: string; status: string; reason?: string }[];
    noAcceptedParents?: boolean;
  }[];
  gatewayStatus?: { gateway: string; attachedRoutes?: number }[];
  probes: CorpusProbe[];
  file: string;
}

export interface Workload {
  namespace: string;
  deployment: string;
  podLabels: Record<string, string>;
  replicas: number;
  role: string;
}

export interface Topology {
  manifests: { base: Record<string, unknown>[]; mesh: Record<string, unknown>[] };
  workloads: Workload[];
}

export function loadTopology(dir: string): Topology {
  return JSON.parse(readFileSync(join(dir, 'topology.json'), 'utf8')) as Topology;
}

export function loadCases(dir: string): CorpusCase[] {
  const casesDir = join(dir, 'cases');
  let files: string[];
  try {
    files = readdirSync(casesDir)
      .filter((f) => f.endsWith('.json'))
      .sort();
  } catch {
    throw new WeirError('ERR_CONFORMANCE_NO_CASES', `no case files in ${casesDir}`);
  }
  return files.map((f) => {
    const file = join(casesDir, f);
    const c = JSON.parse(readFileSync(file, 'utf8')) as CorpusCase;
    if (typeof c.id !== 'string' || !Array.isArray(c.manifests) || !Array.isArray(c.probes))
      throw new WeirError('ERR_CONFORMANCE_CASE', 'a case needs id, manifests and probes', {
        location: { file },
      });
    return { ...c, file };
  });
}

/** `{GATEWAY_CLASS_NAME}` → weir's class, everywhere in a manifest. */
export function fillClass<T>(o: T): T {
  return JSON.parse(JSON.stringify(o).replaceAll('{GATEWAY_CLASS_NAME}', weirClassName)) as T;
}

export const weirGatewayClass = {
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'GatewayClass',
  metadata: { name: weirClassName },
  spec: { controllerName: weirController },
};

/** The objects of a case as a lab would hold them: class, topology, the case's manifests. */
export function caseObjects(topo: Topology, c: CorpusCase): WorldObject[] {
  const all = [weirGatewayClass, ...topo.manifests.base, ...topo.manifests.mesh, ...c.manifests].map(
    fillClass,
  );
  return all.map((m, i) => {
    const meta = (m as { metadata: { name: string; namespace?: string } }).metadata;
    const kind = (m as { kind: string }).kind;
    const namespaced = kind !== 'Namespace' && kind !== 'GatewayClass';
    // Applied in order: the creation time orders routes of equal precedence.
    const object = {
      ...m,
      metadata: { ...meta, creationTimestamp: `2026-01-01T00:00:${String(i).padStart(2, '0')}Z` },
    };
    return {
      kind,
      name: meta.name,
      ...(namespaced ? { namespace: meta.namespace ?? 'default' } : {}),
      file: c.file,
      object,
    };
  });
}

/** Compiles a case offline, with made-up Gateway addresses. */
export function compileCase(topo: Topology, c: CorpusCase): Compiled {
  const objects = caseObjects(topo, c);
  const addresses = new Map<string, string>();
  let n = 10;
  for (const o of objects)
    if (o.kind === 'Gateway') addresses.set(`${o.namespace}/${o.name}`, `198.51.100.${n++}`);
  return compile(worldOf(objects, new Map(), addresses));
}

export interface StatusCheck {
  pass: boolean;
  detail: string;
}

/** The case's routeStatus and gatewayStatus expectations against the compiled statuses. */
export function judgeStatus(c: CorpusCase, compiled: Compiled): StatusCheck[] {
  const out: StatusCheck[] = [];
  for (const rs of c.routeStatus ?? []) {
    const [ns, name] = rs.route.split('/') as [string, string];
    const kind = rs.routeKind ?? 'HTTPRoute';
    const route = compiled.routes.find((r) => r.kind === kind && r.namespace === ns && r.name === name);
    if (rs.noAcceptedParents) {
      const parents = route?.parents ?? [];
      const ok =
        parents.length === 0 ||
        (parents.length === 1 &&
          parents[0]?.conditions.some((x) => x.type === 'Accepted' && x.status === 'False'));
      out.push({
        pass: !!ok,
        detail: `${kind} ${rs.route}: no accepted parents${ok ? '' : ` (parents: ${JSON.stringify(parents)})`}`,
      });
      continue;
    }
    const pr = rs.parentRef;
    const parent = route?.parents.find(
      (p) =>
        p.parentRef.name === pr?.name &&
        (pr?.kind ?? 'Gateway') === p.parentRef.kind &&
        (pr?.namespace === undefined || p.parentRef.namespace === pr.namespace),
    );
    for (const want of rs.conditions ?? []) {
      const got = parent?.conditions.find((x: Condition) => x.type === want.type);
      const ok =
        !!got && got.status === want.status && (want.reason === undefined || got.reason === want.reason);
      out.push({
        pass: ok,
        detail: `${kind} ${rs.route} parent ${pr?.name}: ${want.type}=${want.status}${want.reason ? `/${want.reason}` : ''}${ok ? '' : ` (got ${got ? `${got.status}/${got.reason}` : 'none'})`}`,
      });
    }
  }
  for (const gs of c.gatewayStatus ?? []) {
    const [ns, name] = gs.gateway.split('/') as [string, string];
    const g = compiled.gateways.find((x) => x.namespace === ns && x.name === name);
    const total = (g?.listeners ?? []).reduce((n, l) => n + l.attachedRoutes, 0);
    const ok = gs.attachedRoutes === undefined || total === gs.attachedRoutes;
    out.push({
      pass: ok,
      detail: `Gateway ${gs.gateway}: attachedRoutes ${gs.attachedRoutes}${ok ? '' : ` (got ${total})`}`,
    });
  }
  return out;
}

/** The request a probe sends, for the router. */
export function probeRequest(
  p: CorpusProbe,
  c: CorpusCase,
  gatewayAddress: string | undefined,
): RouteRequest {
  const r = p.request;
  const headers: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(r.headers ?? {})) headers[k.toLowerCase()] = [v];
  if (r.protocol === 'grpc') {
    for (const [k, v] of Object.entries(r.metadata ?? {})) headers[k.toLowerCase()] = [v];
    headers['content-type'] = ['application/grpc'];
    const method = (r as { method?: string }).method ?? '';
    return {
      method: 'POST',
      path: `/${r.service ?? ''}/${method}`,
      host: r.authority ?? gatewayAddress ?? '',
      headers,
    };
  }
  let host = r.host ?? gatewayAddress ?? '';
  if (c.mode === 'mesh' && headers.host) host = headers.host[0] ?? host;
  delete headers.host;
  return {
    method: r.method ?? 'GET',
    path: r.path ?? '/',
    host,
    headers,
    ...(c.mode === 'mesh' ? { fromNamespace: p.from.split('/')[0] ?? '' } : {}),
  };
}

/** Deployments whose pods a Service selects: the prefix the served pod's name starts with. */
export function serviceDeployments(topo: Topology, c: CorpusCase, ns: string, name: string): string[] {
  const svc = caseObjects(topo, c).find((o) => o.kind === 'Service' && o.namespace === ns && o.name === name);
  const sel =
    (svc?.object as { spec?: { selector?: Record<string, string> } } | undefined)?.spec?.selector ?? {};
  if (Object.keys(sel).length === 0) return [];
  return topo.workloads
    .filter((w) => w.namespace === ns && Object.entries(sel).every(([k, v]) => w.podLabels[k] === v))
    .map((w) => w.deployment);
}

/** Decides a probe offline: the route decision for its request. */
export function decideProbe(
  topo: Topology,
  c: CorpusCase,
  compiled: Compiled,
  p: CorpusProbe,
  random = Math.random,
): RouteDecision | { kind: 'direct'; service: string; port: number; pod?: boolean } | undefined {
  if (c.mode === 'gateway') {
    const gw = p.to.gateway ?? '';
    const table = compiled.gatewayPorts.find((t) => t.gateway === gw && t.port === p.to.port);
    const address = compiled.gateways.find((g) => `${g.namespace}/${g.name}` === gw)?.address;
    if (!table) return { kind: 'no-route', status: 404, reason: `nothing listens on ${gw}:${p.to.port}` };
    return routeGateway(table, probeRequest(p, c, address), random);
  }
  const fromNs = p.from.split('/')[0] ?? '';
  if (p.to.podIPOf) {
    // Straight to a pod: no Service, so no mesh route applies.
    const [ns, dep] = p.to.podIPOf.split('/') as [string, string];
    return { kind: 'direct', service: `${ns}/${dep}`, port: p.to.port, pod: true };
  }
  if (!p.to.host) return undefined;
  const [svcName, svcNs = fromNs] = p.to.host.split('.') as [string, string | undefined];
  const table = compiled.meshPorts.find((t) => t.service === `${svcNs}/${svcName}` && t.port === p.to.port);
  if (!table) return { kind: 'direct', service: `${svcNs}/${svcName}`, port: p.to.port };
  return routeMesh(table, probeRequest(p, c, undefined), random);
}

export interface ReplayProbe {
  id: string;
  /** 'judged': decided offline; 'traffic': needs a real backend (timeouts, retries, mirrors …). */
  mode: 'judged' | 'traffic';
  pass: boolean;
  detail: string;
}

const trafficOnly = ['timeout', 'retry', 'websocketUpgrade', 'mirrorDistribution'];

function norm(s: string, ws: boolean) {
  return ws ? s.replace(/\s+/g, '') : s;
}

/** Replays one probe through compiler and router and judges what can be judged without traffic. */
export function replayProbe(topo: Topology, c: CorpusCase, compiled: Compiled, p: CorpusProbe): ReplayProbe {
  const e = p.expect;
  const needsTraffic =
    trafficOnly.some((k) => k in e) ||
    p.request.protocol === 'websocket' ||
    /[?&](delay|succeedAfter)=/.test(String(p.request.path ?? ''));
  const fail = (detail: string): ReplayProbe => ({ id: p.id, mode: 'judged', pass: false, detail });
  if (needsTraffic) return { id: p.id, mode: 'traffic', pass: true, detail: 'judged only with real traffic' };

  if (e.weights) {
    const weights = e.weights as Record<string, number>;
    const counts = new Map<string, number>();
    // The router's draw is stratified over [0, 1): the shares test how weights map onto draws, not
    // how lucky 500 coin flips were (with Math.random a 0.7 weight missed ±0.05 about 1 run in 60).
    const n = 500;
    for (let i = 0; i < n; i++) {
      const draw = (i + 0.5) / n;
      const d = decideProbe(topo, c, compiled, p, () => draw);
      if (!d || d.kind !== 'forward') return fail(`a weighted request was not forwarded (${d?.kind})`);
      const deps = serviceDeployments(topo, c, d.backend.namespace, d.backend.name);
      const name = deps[0] ?? d.backend.name;
      counts.set(name, (counts.get(name) ?? 0) + 1);
    }
    for (const [b, w] of Object.entries(weights)) {
      const share = (counts.get(b) ?? 0) / n;
      if (w === 0 && share > 0) return fail(`${b} has weight 0 but got ${share}`);
      if (Math.abs(share - w) > 0.05) return fail(`${b}: share ${share.toFixed(3)} vs weight ${w}`);
    }
    for (const b of counts.keys()) if (!(b in weights)) return fail(`unexpected backend ${b}`);
    return {
      id: p.id,
      mode: 'judged',
      pass: true,
      detail: `shares ${[...counts].map(([b, k]) => `${b}=${(k / n).toFixed(2)}`).join(' ')}`,
    };
  }

  const d = decideProbe(topo, c, compiled, p);
  if (!d) return fail('no decision');
  if (c.comparison === 'gateway-grpc') {
    const want = e.grpcStatus as string;
    if (d.kind === 'no-route')
      return want === 'UNIMPLEMENTED' ? ok(p, 'no route: UNIMPLEMENTED') : fail(`no route (${d.reason})`);
    if (d.kind !== 'forward') return fail(`${d.kind}`);
    const deps = serviceDeployments(topo, c, d.backend.namespace, d.backend.name);
    const method = (p.request as { method?: string }).method;
    const got = method === 'EchoThree' ? 'UNIMPLEMENTED' : 'OK';
    if (got !== want) return fail(`gRPC ${got}, want ${want}`);
    if (e.backend && !deps.some((x) => x.startsWith(String(e.backend))))
      return fail(`served by ${deps.join('|')}, want ${String(e.backend)}`);
    if (e.namespace && d.backend.namespace !== e.namespace) return fail(`namespace ${d.backend.namespace}`);
    return ok(p, `${got} from ${deps.join('|')}`);
  }

  const status = statusOf(d);
  const statuses = (e.statusOneOf as number[] | undefined) ?? [e.status as number];
  if (!statuses.includes(status))
    return fail(`status ${status}, want ${statuses.join('|')}${'reason' in d ? ` (${d.reason})` : ''}`);
  if (d.kind === 'redirect') {
    const want = e.redirectLocation as
      { scheme: string; host: string | null; port: string | number | null; path: string } | undefined;
    if (!want) return ok(p, `redirect ${d.location}`);
    const u = new URL(d.location);
    const scheme = u.protocol.replace(':', '');
    if (scheme !== want.scheme) return fail(`Location ${d.location}: scheme`);
    if (want.host !== null && u.hostname !== want.host)
      return fail(`Location ${d.location}: host, want ${want.host}`);
    if (
      want.port !== null &&
      want.port !== undefined &&
      u.port !== String(want.port) &&
      !(u.port === '' && String(want.port) === (scheme === 'https' ? '443' : '80'))
    )
      return fail(`Location ${d.location}: port, want ${want.port}`);
    if (want.port === null && u.port !== '') return fail(`Location ${d.location}: port should be empty`);
    if (u.pathname !== want.path) return fail(`Location ${d.location}: path, want ${want.path}`);
    return ok(p, `redirect ${d.location}`);
  }
  const respHeaders: Record<string, string[]> = {};
  const ws = e.ignoreWhitespaceInResponseHeaderValues === true;
  if (d.kind === 'cors-preflight') {
    for (const [k, v] of d.headers) respHeaders[k] = [v];
    const r = checkResponseHeaders(e, respHeaders, ws);
    return r ? fail(r) : ok(p, 'preflight answered by the gateway');
  }
  if (d.kind !== 'forward' && d.kind !== 'direct') return ok(p, `${d.kind} ${status}`);
  if (e.notEchoed) return fail('the request was echoed by a backend');
  // What the echo server would answer.
  const [bns, bname] =
    d.kind === 'direct' ? (d.service.split('/') as [string, string]) : [d.backend.namespace, d.backend.name];
  const deps = d.kind === 'direct' && d.pod ? [bname] : serviceDeployments(topo, c, bns, bname);
  if (e.backend !== undefined && !deps.some((x) => x.startsWith(String(e.backend))))
    return fail(`served by ${deps.join('|') || `${bns}/${bname}`}, want ${String(e.backend)}`);
  if (e.namespace !== undefined && bns !== e.namespace)
    return fail(`namespace ${bns}, want ${String(e.namespace)}`);
  const seen = d.kind === 'forward' ? d.request : { ...probeRequest(p, c, undefined) };
  const want = e.requestSeenByBackend as
    | {
        method?: string;
        path?: string;
        host?: string;
        headers?: Record<string, string>;
        absentHeaders?: string[];
      }
    | undefined;
  if (want) {
    if (want.method !== undefined && seen.method !== want.method)
      return fail(`backend saw method ${seen.method}`);
    if (want.path !== undefined && c.comparison !== 'mesh-echo' && seen.path !== want.path)
      return fail(`backend saw path ${seen.path}, want ${want.path}`);
    if (want.host !== undefined && c.comparison !== 'mesh-echo' && seen.host !== want.host)
      return fail(`backend saw host ${seen.host}, want ${want.host}`);
    for (const [k, v] of Object.entries(want.headers ?? {})) {
      const got = seen.headers[k.toLowerCase()]?.join(',');
      if (got !== v) return fail(`backend saw ${k}: ${got}, want ${v}`);
    }
    for (const k of want.absentHeaders ?? [])
      if (seen.headers[k.toLowerCase()] !== undefined) return fail(`backend saw ${k}`);
  }
  for (const [k, v] of Object.entries(p.request.backendSetResponseHeaders ?? {}))
    respHeaders[k.toLowerCase()] = [v];
  respHeaders['content-type'] = ['application/json'];
  if (d.kind === 'forward') {
    for (const ops of d.responseHeaders) applyHeaderOps(respHeaders, ops);
    for (const [k, v] of d.corsHeaders) respHeaders[k] = [v];
  }
  const r = checkResponseHeaders(e, respHeaders, ws);
  if (r) return fail(r);
  return ok(p, `200 from ${deps.join('|') || `${bns}/${bname}`} ${seen.method} ${seen.host}${seen.path}`);
}

const ok = (p: CorpusProbe, detail: string): ReplayProbe => ({
  id: p.id,
  mode: 'judged',
  pass: true,
  detail,
});

function statusOf(d: NonNullable<ReturnType<typeof decideProbe>>): number {
  if (d.kind === 'forward' || d.kind === 'direct') return 200;
  return d.status;
}

function checkResponseHeaders(
  e: Record<string, unknown>,
  got: Record<string, string[]>,
  ws: boolean,
): string | undefined {
  for (const [k, v] of Object.entries((e.responseHeaders as Record<string, string>) ?? {})) {
    const g = got[k.toLowerCase()]?.join(',');
    if (g === undefined || norm(g, ws) !== norm(v, ws)) return `response ${k}: ${g}, want ${v}`;
  }
  for (const [k, vs] of Object.entries((e.responseHeadersOneOf as Record<string, string[]>) ?? {})) {
    const g = got[k.toLowerCase()]?.join(',');
    if (g === undefined || !vs.some((v) => norm(v, ws) === norm(g, ws)))
      return `response ${k}: ${g}, want one of ${vs.join(' | ')}`;
  }
  for (const k of (e.absentResponseHeaders as string[]) ?? [])
    if (got[k.toLowerCase()] !== undefined) return `response has ${k}`;
  return undefined;
}

// `weir conformance run --suite gateway-api`: the Gateway API corpus (conformance/gateway-api).
//
// simulate: each case compiled and its probes replayed through the router offline (src/gateway/
// corpus.ts), status expectations judged; probes that need a backend's behaviour over time are
// reported as not judged.
//
// datapath: one lab with its agent; the topology's Namespaces and Services applied as written, each
// Deployment of an HTTP echo role one Pod running the conformance echo server (src/gateway/echo.ts),
// weir's GatewayClass; then per case: its manifests applied (through the agent's API, as `weir
// apply`), the route status awaited and judged, every probe sent from a lab external with real
// HTTP to the Gateway's address and judged as the upstream suite does (eventually consistent: 3
// passes in a row within the probe budget), the case's objects deleted again. Mesh (GAMMA) and gRPC
// cases are reported failed with the reason: weir does not serve them yet.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { agentClient } from '../agent/client.js';
import { startAgent, stopAgent } from '../agent/spawn.js';
import type { DesiredObject } from '../cluster/objects.js';
import {
  caseObjects,
  compileCase,
  fillClass,
  judgeStatus,
  loadCases,
  loadTopology,
  replayProbe,
  weirGatewayClass,
  type CorpusCase,
  type CorpusProbe,
  type Topology,
} from '../gateway/corpus.js';
import { echoServerScript } from '../gateway/echo.js';
import type { GatewayView } from '../gateway/stored.js';
import { Lab, nodeOf } from '../lab/index.js';
import { parseLabSpec } from '../lab/spec.js';
import { repoRoot } from '../shared/paths.js';

export interface GatewayProbeReport {
  id: string;
  pass: boolean;
  detail: string;
}

export interface GatewayCaseReport {
  id: string;
  name: string;
  pass: boolean;
  probes: GatewayProbeReport[];
  status?: { pass: boolean; detail: string }[];
}

export interface GatewayRunOptions {
  dir: string;
  mode: 'simulate' | 'datapath';
  /** Only these case ids. */
  only?: string[];
  log?: (line: string) => void;
  /** How long a probe may take to pass 3 times in a row (the suite's 30 s by default). */
  probeBudgetMs?: number;
}

export async function runGatewaySuite(o: GatewayRunOptions): Promise<GatewayCaseReport[]> {
  // --cases may name the corpus folder or its cases/ folder.
  if (!existsSync(join(o.dir, 'topology.json')) && existsSync(join(o.dir, '..', 'topology.json')))
    o = { ...o, dir: join(o.dir, '..') };
  const topo = loadTopology(o.dir);
  const cases = loadCases(o.dir).filter((c) => !o.only || o.only.includes(c.id));
  if (o.mode === 'simulate') return cases.map((c) => simulateCase(topo, c));
  return runInLab(topo, cases, o);
}

function simulateCase(topo: Topology, c: CorpusCase): GatewayCaseReport {
  const compiled = compileCase(topo, c);
  const status = judgeStatus(c, compiled);
  const probes = c.probes.map((p) => {
    const r = replayProbe(topo, c, compiled, p);
    return { id: p.id, pass: r.mode === 'judged' && r.pass, detail: r.mode === 'judged' ? r.detail : 'not judged offline (needs real traffic)' };
  });
  return { id: c.id, name: c.name, pass: status.every((s) => s.pass) && probes.every((p) => p.pass), probes, status };
}

// ---- datapath ----

interface HttpAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  error?: string;
}

/** Runs in the external: JSON lines in ({id, ip, port, host, method, path, headers}), JSON lines out. */
const clientScript = `
const http = require('http');
const rl = require('readline').createInterface({ input: process.stdin });
const agent = new http.Agent({ keepAlive: false });
const http2 = require('http2');
const sessions = new Map();
function grpc(q) {
  const k = q.ip + ':' + q.port;
  let s = sessions.get(k);
  if (!s || s.closed || s.destroyed) { s = http2.connect('http://' + k); s.on('error', () => sessions.delete(k)); sessions.set(k, s); }
  const done = (r) => process.stdout.write(JSON.stringify({ id: q.id, ...r }) + '\\n');
  let st;
  try {
    st = s.request({ ':method': 'POST', ':path': '/' + q.grpc.service + '/' + q.grpc.method, ':authority': q.host, 'content-type': 'application/grpc', te: 'trailers', ...q.headers });
  } catch (e) { return done({ status: 0, headers: {}, body: '', error: e.message }); }
  let status = 0, grpcStatus = '', chunks = [];
  const timer = setTimeout(() => st.close(), 10000);
  st.on('response', (h) => { status = h[':status']; if (h['grpc-status'] !== undefined) grpcStatus = String(h['grpc-status']); });
  st.on('trailers', (t) => { if (t['grpc-status'] !== undefined) grpcStatus = String(t['grpc-status']); });
  st.on('data', (c) => chunks.push(c));
  st.on('error', (e) => { clearTimeout(timer); done({ status: 0, headers: {}, body: '', error: e.message }); });
  st.on('end', () => { clearTimeout(timer); const b = Buffer.concat(chunks); done({ status, headers: { 'grpc-status': grpcStatus }, body: b.length > 5 ? b.subarray(5).toString() : '' }); });
  st.end(Buffer.alloc(5));
}
rl.on('line', (line) => {
  const q = JSON.parse(line);
  if (q.grpc) return grpc(q);
  const req = http.request({ host: q.ip, port: q.port, method: q.method, path: q.path, headers: { ...q.headers, host: q.host }, agent, timeout: 10000 }, (res) => {
    const chunks = [];
    res.on('data', (c) => chunks.push(c));
    res.on('end', () => {
      const headers = {};
      for (let i = 0; i < res.rawHeaders.length; i += 2) {
        const k = res.rawHeaders[i].toLowerCase();
        headers[k] = headers[k] === undefined ? res.rawHeaders[i + 1] : headers[k] + ',' + res.rawHeaders[i + 1];
      }
      process.stdout.write(JSON.stringify({ id: q.id, status: res.statusCode, headers, body: Buffer.concat(chunks).toString() }) + '\\n');
    });
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', (e) => process.stdout.write(JSON.stringify({ id: q.id, status: 0, headers: {}, body: '', error: e.message }) + '\\n'));
  req.end();
});
console.log(JSON.stringify({ ready: true }));
`;

class Client {
  #pending = new Map<string, (a: HttpAnswer) => void>();
  constructor(readonly proc: ChildProcessWithoutNullStreams) {
    createInterface({ input: proc.stdout }).on('line', (line) => {
      try {
        const a = JSON.parse(line) as HttpAnswer & { id: string };
        this.#pending.get(a.id)?.(a);
        this.#pending.delete(a.id);
      } catch {
        // not ours
      }
    });
  }

  send(q: {
    ip: string;
    port: number;
    host: string;
    method: string;
    path: string;
    headers: Record<string, string>;
    grpc?: { service: string; method: string };
  }): Promise<HttpAnswer> {
    const id = randomUUID();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        resolve({ status: 0, headers: {}, body: '', error: 'no answer in 15 s' });
      }, 15_000);
      this.#pending.set(id, (a) => {
        clearTimeout(timer);
        resolve(a);
      });
      this.proc.stdin.write(JSON.stringify({ id, ...q }) + '\n');
    });
  }
}

const weirBin = join(repoRoot, 'bin', 'weir');

function spawnIn(lab: string, target: string, script: string, args: string[]): ChildProcessWithoutNullStreams {
  return spawn(weirBin, ['lab', 'exec', target, '--', process.execPath, '-e', script, ...args], {
    env: { ...process.env, WEIR_LAB: lab },
  });
}

function firstLine(p: ChildProcessWithoutNullStreams, what: string, ms = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: p.stdout });
    const timer = setTimeout(() => reject(new Error(`${what} not ready in ${ms} ms`)), ms);
    rl.once('line', (l) => {
      clearTimeout(timer);
      rl.close();
      resolve(l);
    });
  });
}

const toDesired = (m: Record<string, unknown>, file: string): DesiredObject => {
  const meta = m.metadata as { name: string; namespace?: string };
  const kind = m.kind as string;
  const namespaced = kind !== 'Namespace' && kind !== 'GatewayClass';
  return {
    apiVersion: m.apiVersion as string,
    kind,
    name: meta.name,
    ...(namespaced ? { namespace: meta.namespace ?? 'default' } : {}),
    file,
    object: namespaced ? { ...m, metadata: { ...meta, namespace: meta.namespace ?? 'default' } } : m,
  };
};

async function runInLab(topo: Topology, cases: CorpusCase[], o: GatewayRunOptions): Promise<GatewayCaseReport[]> {
  const log = o.log ?? (() => undefined);
  const name = `gwconf-${process.pid % 100000}`;
  const lab = await Lab.open(name);
  const procs: ChildProcessWithoutNullStreams[] = [];
  const logs = new Map<string, string[]>(); // deployment -> echo log lines
  try {
    const cfg = await lab.up(parseLabSpec({ name, externals: [{ name: 'client', ip: '192.0.2.70' }] }, 'gateway-api'));
    await startAgent({ lab: name, nodeNetns: nodeOf(cfg).netns });
    const api = agentClient(name);
    const file = join(o.dir, 'topology.json');
    const echoRoles = new Set(['echo-basic-http', 'mesh-echo', 'echo-basic-grpc']);
    const base = [...topo.manifests.base, ...topo.manifests.mesh]
      .filter((m) => m.kind === 'Namespace' || m.kind === 'Service')
      .map(fillClass);
    const pods = topo.workloads
      .filter((w) => echoRoles.has(w.role))
      .map((w) => ({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          name: `${w.deployment}-0-weir`,
          namespace: w.namespace,
          labels: w.podLabels,
          annotations: { 'weir.dev/workload': 'none' },
        },
        spec: {
          containers: [
            {
              name: 'echo',
              ports:
                w.role === 'mesh-echo'
                  ? [{ containerPort: 8080 }, { containerPort: 8081 }, { containerPort: 7070 }]
                  : [{ containerPort: 3000 }, { containerPort: 3001 }],
            },
          ],
        },
        port: w.role === 'mesh-echo' ? 8080 : 3000,
        role: w.role,
      }));
    await api.call('POST', '/v1/apply', {
      objects: [...base, ...pods.map(({ port: _port, role: _role, ...p }) => p), weirGatewayClass, ...topo.manifests.base.filter((m) => m.kind === 'Gateway').map(fillClass)].map((m) =>
        toDesired(m as Record<string, unknown>, file),
      ),
    });
    for (const p of pods) {
      const dep = p.metadata.name.replace(/-0-weir$/, '');
      const target = `${p.metadata.namespace}/${p.metadata.name}`;
      const grpcPod = p.role === 'echo-basic-grpc';
      const proc = spawnIn(name, target, echoServerScript, [String(p.port), p.metadata.namespace, p.metadata.name, ...(grpcPod ? ['grpc'] : [])]);
      procs.push(proc);
      if (p.role === 'mesh-echo') {
        // The mesh echo app also serves gRPC on 7070.
        const g = spawnIn(name, target, echoServerScript, ['7070', p.metadata.namespace, p.metadata.name, 'grpc']);
        procs.push(g);
        await firstLine(g, `gRPC echo server ${p.metadata.name}`);
      }
      const lines = logs.get(dep) ?? [];
      logs.set(dep, lines);
      await firstLine(proc, `echo server ${p.metadata.name}`);
      createInterface({ input: proc.stdout }).on('line', (l) => {
        lines.push(l);
        if (lines.length > 5000) lines.splice(0, 1000);
      });
    }
    const clientProc = spawnIn(name, 'ext:client', clientScript, []);
    procs.push(clientProc);
    await firstLine(clientProc, 'the probe client');
    const external = new Client(clientProc);
    // Mesh probes come from inside a pod of the named Deployment: one client process per pod.
    const inPod = new Map<string, Promise<Client>>();
    const client = (from: string): Promise<Client> => {
      if (from === 'client') return Promise.resolve(external);
      let c = inPod.get(from);
      if (!c) {
        const proc = spawnIn(name, `${from}-0-weir`, clientScript, []);
        procs.push(proc);
        c = firstLine(proc, `the probe client in ${from}`).then(() => new Client(proc));
        inPod.set(from, c);
      }
      return c;
    };
    log(`lab ${name} up: ${pods.length} echo pods, client ready`);

    const out: GatewayCaseReport[] = [];
    for (const c of cases) {
      const started = Date.now();
      const r = await runCase(name, c, client, logs, o.probeBudgetMs ?? 30_000);
      out.push(r);
      log(`${r.pass ? 'PASS' : 'FAIL'} ${c.id} ${c.name} (${r.probes.filter((p) => p.pass).length}/${r.probes.length} probes, ${Date.now() - started} ms)`);
    }
    return out;
  } finally {
    for (const p of procs) p.kill('SIGKILL');
    await stopAgent(name).catch(() => undefined);
    await lab.down().catch(() => undefined);
  }
}

async function runCase(
  lab: string,
  c: CorpusCase,
  client: (from: string) => Promise<Client>,
  logs: Map<string, string[]>,
  budgetMs: number,
): Promise<GatewayCaseReport> {
  const api = agentClient(lab);
  const manifests = c.manifests.map((m) => toDesired(fillClass(m), c.file));
  const report: GatewayCaseReport = { id: c.id, name: c.name, pass: false, probes: [] };
  try {
    await api.call('POST', '/v1/apply', { objects: manifests });
  } catch (err) {
    report.probes = [{ id: `${c.id}.apply`, pass: false, detail: `apply failed: ${(err as Error).message}` }];
    return report;
  }
  try {
    // The route status, as the suite waits for it.
    let view = await api.call<GatewayView>('GET', '/v1/gateway');
    const deadline = Date.now() + 10_000;
    let status = judgeStatus(c, view.compiled);
    while (status.some((s) => !s.pass) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      view = await api.call<GatewayView>('GET', '/v1/gateway');
      status = judgeStatus(c, view.compiled);
    }
    report.status = status;
    const svcs = (await api.call<{ objects: DesiredObject[] }>('GET', '/v1/services')).objects;
    const podIPs = new Map(
      (await api.call<{ items: { namespace: string; name: string; ip: string }[] }>('GET', '/v1/pods')).items.map((x) => [
        `${x.namespace}/${x.name.replace(/-0-weir$/, '')}`,
        x.ip,
      ]),
    );
    const target = (p: CorpusProbe): string => {
      if (p.to.gateway) return view.compiled.gateways.find((g) => `${g.namespace}/${g.name}` === p.to.gateway)?.address ?? '';
      if (p.to.podIPOf) return podIPs.get(p.to.podIPOf) ?? '';
      // A Service's DNS name, in the client's namespace unless qualified.
      const [svc = '', ns = p.from.split('/')[0] ?? ''] = (p.to.host ?? '').split('.');
      const o = svcs.find((x) => x.kind === 'Service' && x.namespace === ns && x.name === svc);
      return (o?.object as { spec?: { clusterIP?: string } } | undefined)?.spec?.clusterIP ?? '';
    };
    for (const p of c.probes)
      report.probes.push(await runProbe(p, await client(p.from), target(p), logs, budgetMs));
    report.pass = status.every((s) => s.pass) && report.probes.every((p) => p.pass);
  } finally {
    // Setup deletions and the case's own objects go; the topology stays.
    await api
      .call('POST', '/v1/delete', {
        objects: manifests.map((m) => ({ apiVersion: m.apiVersion, kind: m.kind, name: m.name, ...(m.namespace ? { namespace: m.namespace } : {}) })),
        ignoreNotFound: true,
      })
      .catch(() => undefined);
  }
  void caseObjects;
  return report;
}

const fill = (s: string, vars: Record<string, string>) => s.replace(/\{(requestId|uuid)\}/g, (_, k: string) => vars[k] ?? '');

async function runProbe(
  p: CorpusProbe,
  client: Client,
  ip: string,
  logs: Map<string, string[]>,
  budgetMs: number,
): Promise<GatewayProbeReport> {
  const e = p.expect;
  if (p.request.protocol === 'websocket' || e.websocketUpgrade)
    return { id: p.id, pass: false, detail: 'WebSocket probes are not sent by the runner yet' };
  if (!ip) return { id: p.id, pass: false, detail: `no address for ${JSON.stringify(p.to)}` };
  const deadline = Date.now() + budgetMs;
  let streak = 0;
  let last = '';
  while (Date.now() < deadline) {
    const vars = { requestId: randomUUID(), uuid: randomUUID() };
    const r = p.request;
    const headers: Record<string, string> = {};
    let host = r.host ?? ip;
    for (const [k, v] of Object.entries(r.headers ?? {}))
      if (k.toLowerCase() === 'host') host = v;
      else headers[k] = fill(v, vars);
    const set = Object.entries(r.backendSetResponseHeaders ?? {});
    if (set.length > 0) headers['X-Echo-Set-Header'] = set.map(([k, v]) => `${k}:${v}`).join(',');
    const path = fill(String(r.path ?? '/'), vars);
    const isGrpc = r.protocol === 'grpc' || r.scheme === 'grpc';
    if (isGrpc) {
      host = r.authority ?? (r.host ?? ip);
      for (const [k, v] of Object.entries(r.metadata ?? {})) headers[k.toLowerCase()] = v;
    }
    const q = {
      ip,
      port: p.to.port,
      host,
      method: r.method ?? 'GET',
      path,
      headers,
      ...(isGrpc
        ? {
            grpc: {
              service: r.service ?? 'gateway_api_conformance.echo_basic.grpcecho.GrpcEcho',
              method: (r as { method?: string }).method ?? 'Echo',
            },
          }
        : {}),
    };
    let verdict: { pass: boolean; detail: string };
    if (e.weights) verdict = await judgeWeights(client, q, e.weights as Record<string, number>);
    else if (e.mirrorDistribution) verdict = await judgeMirrorShare(client, q, e, logs);
    else {
      const a = await client.send(q);
      verdict = q.grpc ? judgeGrpc(p, a) : judgeAnswer(p, a, vars);
      if (verdict.pass && Array.isArray(e.mirroredTo)) verdict = await judgeMirror(e.mirroredTo as { backend: string; requestURI: string }[], vars, logs);
    }
    last = verdict.detail;
    if (verdict.pass) {
      if (++streak >= (e.weights || e.mirrorDistribution ? 1 : 3)) return { id: p.id, pass: true, detail: verdict.detail };
    } else streak = 0;
    await new Promise((res) => setTimeout(res, 100));
  }
  return { id: p.id, pass: false, detail: last };
}

async function judgeMirror(
  want: { backend: string; requestURI: string }[],
  vars: Record<string, string>,
  logs: Map<string, string[]>,
): Promise<{ pass: boolean; detail: string }> {
  for (const m of want) {
    const line = `Echoing back request made to ${fill(m.requestURI, vars)} to client`;
    const deadline = Date.now() + 10_000;
    while (!(logs.get(m.backend) ?? []).some((l) => l.startsWith(line))) {
      if (Date.now() > deadline) return { pass: false, detail: `${m.backend} did not log the mirrored request` };
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { pass: true, detail: `mirrored to ${want.map((m) => m.backend).join(', ')}` };
}

/** A percentage mirror: 500 requests with one request id; the mirror's log lines within the range. */
async function judgeMirrorShare(
  client: Client,
  q: Parameters<Client['send']>[0],
  e: Record<string, unknown>,
  logs: Map<string, string[]>,
): Promise<{ pass: boolean; detail: string }> {
  const d = e.mirrorDistribution as { requestsPerRound: number; acceptRange: [number, number] };
  const m = (e.mirroredTo as { backend: string }[])[0];
  if (!m) return { pass: false, detail: 'no mirror backend named' };
  const lines = logs.get(m.backend) ?? [];
  const line = `Echoing back request made to ${q.path} to client`;
  const before = lines.filter((l) => l.startsWith(line)).length;
  for (let i = 0; i < d.requestsPerRound; i += 10) {
    const batch = await Promise.all(Array.from({ length: 10 }, () => client.send(q)));
    const bad = batch.find((a) => a.status !== 200);
    if (bad) return { pass: false, detail: `a mirrored request answered ${bad.status} ${bad.error ?? ''}` };
  }
  await new Promise((r) => setTimeout(r, 2000));
  const n = lines.filter((l) => l.startsWith(line)).length - before;
  const [lo, hi] = d.acceptRange;
  return { pass: n >= lo && n <= hi, detail: `${n} of ${d.requestsPerRound} mirrored (accept ${lo}..${hi})` };
}

async function judgeWeights(
  client: Client,
  q: Parameters<Client['send']>[0],
  weights: Record<string, number>,
): Promise<{ pass: boolean; detail: string }> {
  const n = 500;
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i += 10) {
    const batch = await Promise.all(Array.from({ length: 10 }, () => client.send(q)));
    for (const a of batch) {
      let pod = `status ${a.status}${a.headers['grpc-status'] ? ` grpc-status ${a.headers['grpc-status']}` : ''}`;
      try {
        pod = (JSON.parse(a.body) as { pod: string }).pod.replace(/-0-weir$/, '');
      } catch {
        // not an echo
      }
      counts.set(pod, (counts.get(pod) ?? 0) + 1);
    }
  }
  const shares = [...counts].map(([b, k]) => `${b}=${(k / n).toFixed(3)}`).join(' ');
  for (const b of counts.keys()) if (!(b in weights)) return { pass: false, detail: `unexpected ${b} (${shares})` };
  for (const [b, w] of Object.entries(weights)) {
    const share = (counts.get(b) ?? 0) / n;
    if (w === 0 ? share > 0 : Math.abs(share - w) > 0.05) return { pass: false, detail: `${b} share ${share} vs ${w} (${shares})` };
  }
  return { pass: true, detail: shares };
}

const grpcCodes: Record<string, string> = { '0': 'OK', '12': 'UNIMPLEMENTED', '14': 'UNAVAILABLE', '13': 'INTERNAL' };

/** utils/grpc: the gRPC status (HTTP 404 is UNIMPLEMENTED, as grpc-go maps it), then method, namespace, pod. */
function judgeGrpc(p: CorpusProbe, a: HttpAnswer): { pass: boolean; detail: string } {
  const e = p.expect;
  if (a.error) return { pass: false, detail: `gRPC call failed: ${a.error}` };
  const code = a.status === 404 ? 'UNIMPLEMENTED' : a.status === 200 ? (grpcCodes[a.headers['grpc-status'] ?? ''] ?? `grpc-status ${a.headers['grpc-status']}`) : `HTTP ${a.status}`;
  const want = (e.grpcStatus as string | undefined) ?? (e.status === 200 ? 'OK' : String(e.status));
  if (code !== want) return { pass: false, detail: `gRPC ${code}, want ${want}` };
  if (code !== 'OK') return { pass: true, detail: code };
  let m: { fullyQualifiedMethod: string; namespace: string; pod: string };
  try {
    m = JSON.parse(a.body) as typeof m;
  } catch {
    return { pass: false, detail: 'no echo message' };
  }
  if (e.fullyQualifiedMethod !== undefined && m.fullyQualifiedMethod !== e.fullyQualifiedMethod) return { pass: false, detail: `method ${m.fullyQualifiedMethod}` };
  if (e.namespace !== undefined && m.namespace !== e.namespace) return { pass: false, detail: `namespace ${m.namespace}` };
  if (e.backend !== undefined && !m.pod.startsWith(String(e.backend))) return { pass: false, detail: `served by ${m.pod}, want ${String(e.backend)}` };
  return { pass: true, detail: `OK from ${m.pod}` };
}

const norm = (s: string, ws: boolean) => (ws ? s.replace(/\s+/g, '') : s);

/** The upstream suite's CompareRoundTrip, for one answer. */
export function judgeAnswer(p: CorpusProbe, a: HttpAnswer, vars: Record<string, string> = {}): { pass: boolean; detail: string } {
  const e = p.expect;
  const bad = (detail: string) => ({ pass: false, detail });
  if (a.error) return bad(`request failed: ${a.error}`);
  const statuses = (e.statusOneOf as number[] | undefined) ?? [e.status as number];
  if (!statuses.includes(a.status)) return bad(`status ${a.status}, want ${statuses.join('|')}: ${a.body.slice(0, 120).trim()}`);
  const ws = e.ignoreWhitespaceInResponseHeaderValues === true;
  if (a.status >= 300 && a.status < 400 && e.redirectLocation) {
    const want = e.redirectLocation as { scheme: string; host: string | null; port: string | number | null; path: string };
    const loc = a.headers.location ?? '';
    let u: URL;
    try {
      u = new URL(loc);
    } catch {
      return bad(`Location '${loc}' is not a URL`);
    }
    const scheme = u.protocol.replace(':', '');
    if (scheme !== want.scheme) return bad(`Location ${loc}: scheme, want ${want.scheme}`);
    if (want.host !== null && u.hostname !== want.host) return bad(`Location ${loc}: host, want ${want.host}`);
    const dflt = scheme === 'https' ? '443' : '80';
    if (want.port !== null && want.port !== undefined ? (u.port || dflt) !== String(want.port) : u.port !== '' && u.port !== dflt)
      return bad(`Location ${loc}: port, want ${String(want.port)}`);
    if (u.pathname !== want.path) return bad(`Location ${loc}: path, want ${want.path}`);
    return { pass: true, detail: `${a.status} ${loc}` };
  }
  if (a.status !== 200 && a.status !== 204) return { pass: true, detail: `status ${a.status}` };
  let echo: { path: string; host: string; method: string; headers: Record<string, string[]>; namespace: string; pod: string } | undefined;
  try {
    echo = JSON.parse(a.body) as typeof echo;
  } catch {
    echo = undefined;
  }
  if (e.notEchoed) {
    if (echo && typeof echo === 'object' && 'pod' in echo) return bad('answered by a backend, not the gateway');
  } else if (!echo) return bad(`not an echo answer: ${a.body.slice(0, 80)}`);
  if (echo) {
    const want = e.requestSeenByBackend as { method?: string; path?: string; host?: string; headers?: Record<string, string>; absentHeaders?: string[] } | undefined;
    if (want) {
      if (want.method !== undefined && echo.method !== want.method) return bad(`backend saw method ${echo.method}`);
      if (want.path !== undefined && echo.path !== fill(want.path, vars)) return bad(`backend saw path ${echo.path}, want ${want.path}`);
      if (want.host !== undefined && echo.host !== want.host) return bad(`backend saw host ${echo.host}, want ${want.host}`);
      const seen = new Map(Object.entries(echo.headers).map(([k, v]) => [k.toLowerCase(), v.join(',')]));
      for (const [k, v] of Object.entries(want.headers ?? {}))
        if (seen.get(k.toLowerCase()) !== v && seen.get(k.toLowerCase())?.replace(/, /g, ',') !== v) return bad(`backend saw ${k}: ${seen.get(k.toLowerCase())}, want ${v}`);
      for (const k of want.absentHeaders ?? []) if (seen.has(k.toLowerCase())) return bad(`backend saw ${k}`);
    }
    if (e.backend !== undefined && !echo.pod.startsWith(String(e.backend))) return bad(`served by ${echo.pod}, want ${String(e.backend)}`);
    if (e.namespace !== undefined && echo.namespace !== e.namespace) return bad(`namespace ${echo.namespace}`);
  }
  for (const [k, v] of Object.entries((e.responseHeaders as Record<string, string>) ?? {})) {
    const g = a.headers[k.toLowerCase()];
    if (g === undefined || norm(g, ws) !== norm(v, ws)) return bad(`response ${k}: ${g}, want ${v}`);
  }
  for (const [k, vs] of Object.entries((e.responseHeadersOneOf as Record<string, string[]>) ?? {})) {
    const g = a.headers[k.toLowerCase()];
    if (g === undefined || !vs.some((v) => norm(v, ws) === norm(g, ws))) return bad(`response ${k}: ${g}, want one of ${vs.join(' | ')}`);
  }
  for (const k of (e.absentResponseHeaders as string[]) ?? []) if (a.headers[k.toLowerCase()] !== undefined) return bad(`response has ${k}`);
  return { pass: true, detail: `${a.status}${echo ? ` from ${echo.pod} ${echo.method} ${echo.host}${echo.path}` : ''}` };
}

// One runner for every way of answering a probe: the simulate prober (policy engine + lookup)
// and the datapath prober (lab, real packets) plug in through ProberFactory. Each topology is
// built once; each case is applied in turn and every probe of the case is asked. Observations
// come from the prober only; `expect` is read afterwards to judge them.
import { WeirError } from '../shared/errors.js';
import { validatePolicy } from '../policy/api/index.js';
import type { Policy } from '../policy/api/types.js';
import { effectiveNamespaceLabels } from '../identity/pod-labels.js';
import {
  backendPortOf,
  defaultAddresses,
  listCaseFiles,
  loadCase,
  substitutePlaceholders,
  type Addresses,
  type CaseExpect,
  type CaseProbe,
  type ConformanceCase,
  type ExpectedDns,
  type L7Result,
  type ProbeProtocol,
  type Topology,
  type TopologyService,
} from './case.js';

export interface ProbeRequest {
  from: string;
  to: string;
  /** Destination port on `to` (the backend port when the case dials a Service). */
  port: number;
  protocol: ProbeProtocol;
  /** Set when the case dials a Service ClusterIP ("ns/name") on `servicePort`. */
  service?: string;
  servicePort?: number;
  /** L7 corpus: what kind of probe this is, and for `http` the request to send. */
  kind?: L7ProbeKind;
  http?: HttpProbe;
  /** `dns`: the query to send to `to` on `port`/`protocol`. */
  dns?: DnsProbe;
  /** `fqdn`: the name to resolve first (or, resolveFirst false, only name for the control probe). */
  fqdn?: FqdnProbe;
}

/** A DNS probe of the L7 corpus (topology.json probe.kinds.dns). */
export interface DnsProbe {
  query: string;
  type: string;
}

/** A resolve-then-connect probe of the L7 corpus (topology.json probe.kinds.fqdn). */
export interface FqdnProbe {
  name: string;
  /** false: the control probe, straight to the topology address of `to`, no DNS query at all. */
  resolveFirst: boolean;
  /** With resolveFirst: the DNS server pod ("ns/name"), its port and protocol, the query type. */
  resolver?: { server: string; port: number; protocol: ProbeProtocol; type: string };
}

/** An HTTP probe of the L7 corpus (topology.json probe.kinds.http). */
export interface HttpProbe {
  method: string;
  path: string;
  /** The Host header as written; absent: '<ip>' on port 80, else '<ip>:<port>'. */
  host?: string;
  /** Sent verbatim, names exactly as written. */
  headers?: Record<string, string>;
}

/**
 * The kinds of probe of the L7 corpus, in the order a probe's kind is recognised (a resolve-then-
 * connect probe carries `http` too). A session runs the kinds it lists in `kinds`; a probe of any
 * other kind is reported as skipped with this reason.
 */
export const l7ProbeKinds = [
  { kind: 'fqdn', field: 'fqdn', skipped: 'this mode sends no DNS queries (resolve-then-connect)' },
  { kind: 'dns', field: 'dns', skipped: 'this mode sends no DNS queries' },
  { kind: 'http', field: 'http', skipped: 'this mode sends no HTTP requests' },
] as const;

export type L7ProbeKind = (typeof l7ProbeKinds)[number]['kind'];

/** What an L7 probe observed: the corpus' three results, or `error` for anything else. */
export type ObservedResult = L7Result | 'error';

/** An HTTP answer as observed (status, the start of the body, what the server says it received). */
export interface HttpObservation {
  status?: number;
  bodyPrefix?: string;
  upstreamSaw?: { method: string; path: string; host: string; headers: Record<string, string> };
}

/** A DNS answer as observed: its RCODE by name and the addresses of its A/AAAA records. */
export interface DnsObservation {
  rcode?: string;
  answers?: string[];
}

/** The lookup of a resolve-then-connect probe, in the corpus' vocabulary. */
export interface ResolveObservation extends DnsObservation {
  result: ObservedResult;
}

/** An answer with a word on how the probe was made (e.g. the ClusterIP it dialled). */
export interface ProbeAnswer {
  allowed: boolean | null;
  note?: string;
  /** L7 probes: what was observed (`allowed` is then true exactly for 'allowed'). */
  result?: ObservedResult;
  http?: HttpObservation;
  dns?: DnsObservation;
  resolve?: ResolveObservation;
}

export interface Prober {
  /** true = connected, false = blocked, null = not probed (e.g. SCTP unavailable). */
  probe(req: ProbeRequest): Promise<boolean | null | ProbeAnswer>;
}

/** The state a case puts in force: full label sets and every policy. */
export interface CaseState {
  caseId: string;
  file: string;
  namespaces: { name: string; labels: Record<string, string> }[];
  pods: { namespace: string; name: string; labels: Record<string, string> }[];
  /** Every Service in force: the topology's (each pod's own) and the case's additions. */
  services: TopologyService[];
  policies: Policy[];
  /** The same policies as written (placeholders filled), for a prober that hands them on. */
  objects: unknown[];
}

export interface ProberSession extends Prober {
  /** Pod/node/external addresses of this topology (placeholders are filled from these). */
  readonly addresses: Addresses;
  /** How many probes of a case may be in flight at once (default 1). */
  readonly concurrency?: number;
  /** The L7 probe kinds this session runs (others are reported skipped); default none. */
  readonly kinds?: ReadonlySet<L7ProbeKind>;
  /** The lab the session runs in (datapath mode), for a caller that talks to its agent too. */
  readonly lab?: string;
  apply(state: CaseState): Promise<void>;
  close(): Promise<void>;
}

export type ProberFactory = (topology: Topology) => Promise<ProberSession>;

export interface ProbeResult {
  from: string;
  to: string;
  port: number;
  protocol: ProbeProtocol;
  allowed: boolean | null;
  expected?: boolean | null;
  loopback?: boolean;
  /** The case dials this Service's ClusterIP ("ns/name", or the destination's own Service). */
  viaService?: string;
  /** With viaService: the port on `to` after translation. */
  backendPort?: number;
  note?: string;
  /** L7 corpus: the probe object as the case writes it. */
  probe?: Record<string, unknown>;
  /** L7 corpus: what was observed ('skipped': the probe was not run, `note` says why). */
  result?: ObservedResult | 'skipped';
  expectedResult?: L7Result;
  http?: HttpObservation;
  dns?: DnsObservation;
  resolve?: ResolveObservation;
}

export interface CaseReport {
  id: string;
  file: string;
  name: string;
  mode: string;
  /** null when the case has no expectation. */
  pass: boolean | null;
  results: ProbeResult[];
  mismatches: ProbeResult[];
  loopbackMismatches: ProbeResult[];
  counts: { probes: number; compared: number; matched: number; skipped: number };
  error?: string;
  /** The stable code of `error`, when weir raised it. */
  errorCode?: string;
}

export interface RunOptions {
  /** A cases directory (or its parent holding cases/), or a list of case files. */
  casesDir?: string;
  files?: string[];
  mode: string;
  proberFactory: ProberFactory;
}

export interface RunReport {
  cases: CaseReport[];
}

/** Full labels in force for the case: topology labels replaced by labelChanges. */
export function caseState(c: ConformanceCase, addrs: Addresses): CaseState {
  const objects = c.policies.map((raw) => substitutePlaceholders(raw, addrs, c.file));
  const policies = objects.map((o, i) => {
    const obj = o as { kind?: string; metadata?: { name?: string; namespace?: string } };
    const object = `${obj.kind ?? 'policy'} ${obj.metadata?.namespace ? obj.metadata.namespace + '/' : ''}${obj.metadata?.name ?? `#${i}`}`;
    return validatePolicy(obj, { file: c.file, object });
  });
  return {
    caseId: c.id,
    file: c.file,
    namespaces: c.topology.namespaces.map((n) => ({
      name: n.name,
      labels: effectiveNamespaceLabels(n.name, c.labelChanges.namespaces[n.name] ?? n.labels),
    })),
    pods: c.topology.pods.map((p) => ({
      namespace: p.namespace,
      name: p.name,
      labels: c.labelChanges.pods[`${p.namespace}/${p.name}`] ?? p.labels,
    })),
    services: [...c.topology.services, ...c.services],
    policies,
    objects,
  };
}

interface PlannedProbe {
  req: ProbeRequest;
  expected?: boolean | null;
  loopback: boolean;
  note?: string;
  reportPort: number;
}

interface PlanProbe {
  target: string;
  service?: string;
  backendPort?: number;
}

/**
 * A probe through a Service: the ClusterIP of the named Service (or the destination pod's own) on
 * the Service port; policy sees the backend port the Service translates it to.
 */
function serviceRequest(
  c: ConformanceCase,
  from: string,
  to: string,
  port: number,
  protocol: ProbeProtocol,
  probe: PlanProbe,
): { req: ProbeRequest; note?: string } {
  const toPod = c.topology.pods.find((p) => `${p.namespace}/${p.name}` === to);
  const name = probe.service ?? toPod?.service;
  const where = `${c.file}: probe ${protocol}/${port} ${from} -> ${to}`;
  if (!name) {
    if (probe.target === 'service-name')
      // cyclonus dials the Service name; an inline topology without Services has only the pod.
      return {
        req: { from, to, port, protocol },
        note: `the topology gives ${to} no Service: probed its pod IP`,
      };
    throw new WeirError(
      'ERR_CONFORMANCE_CASE',
      `${where}: the target is a ClusterIP but no Service is named`,
    );
  }
  const svc = [...c.topology.services, ...c.services].find((s) => `${s.namespace}/${s.name}` === name);
  if (!svc) throw new WeirError('ERR_CONFORMANCE_CASE', `${where}: unknown Service '${name}'`);
  const sp = svc.ports.find((p) => p.port === port && p.protocol === protocol);
  if (!sp)
    throw new WeirError(
      'ERR_CONFORMANCE_CASE',
      `${where}: Service '${name}' has no port ${port}/${protocol}`,
    );
  const translated = backendPortOf(sp, toPod);
  const backend = probe.backendPort ?? translated;
  if (backend === undefined || (translated !== undefined && translated !== backend))
    throw new WeirError(
      'ERR_CONFORMANCE_CASE',
      `${where}: backendPort ${String(probe.backendPort)} is not what Service '${name}' translates ${port} to (${String(translated)})`,
    );
  return { req: { from, to, port: backend, protocol, service: name, servicePort: port } };
}

function plan(c: ConformanceCase): PlannedProbe[] {
  const isPod = (n: string) => c.topology.pods.some((p) => `${p.namespace}/${p.name}` === n);
  const mk = (from: string, to: string, port: number, protocol: ProbeProtocol, probe: PlanProbe) => {
    const viaService = probe.target === 'service-clusterip' || probe.target === 'service-name';
    const { req, note } = viaService
      ? serviceRequest(c, from, to, port, protocol, probe)
      : { req: { from, to, port, protocol }, note: undefined };
    return { req, loopback: from === to, reportPort: port, ...(note ? { note } : {}) };
  };
  if (c.expect) {
    return c.expect.map((e) => {
      const probe = c.probes.find((p) => p.port === e.port && p.protocol === e.protocol);
      const p = mk(
        e.from,
        e.to,
        e.port,
        e.protocol,
        probe ?? {
          target: e.service ? 'service-clusterip' : 'ip',
          ...(e.service ? { service: e.service } : {}),
          ...(e.backendPort ? { backendPort: e.backendPort } : {}),
        },
      );
      return { ...p, expected: e.allowed, loopback: e.loopback === true || e.from === e.to };
    });
  }
  const from = c.peers?.from ?? c.topology.peers;
  const to = c.peers?.to ?? c.topology.peers;
  const out: PlannedProbe[] = [];
  for (const probe of c.probes)
    for (const f of from)
      for (const t of to)
        if (f !== t && (isPod(f) || isPod(t))) out.push(mk(f, t, probe.port, probe.protocol, probe));
  return out;
}

/** A case of the L7 corpus: its probes name their own ids and peers (conformance/l7/README.md). */
function isL7Case(c: ConformanceCase): boolean {
  return c.probes.length > 0 && c.probes.every((p) => p.id !== undefined);
}

/** A case's report before any probe ran: no results, and a pass only a later check can grant. */
function emptyReport(c: ConformanceCase, mode: string): CaseReport {
  return {
    id: c.id,
    file: c.file,
    name: c.name,
    mode,
    pass: c.expect ? false : null,
    results: [],
    mismatches: [],
    loopbackMismatches: [],
    counts: { probes: 0, compared: 0, matched: 0, skipped: 0 },
  };
}

async function runOne(c: ConformanceCase, session: ProberSession, mode: string): Promise<CaseReport> {
  if (isL7Case(c)) return runL7(c, session, mode);
  const report = emptyReport(c, mode);
  try {
    const planned = plan(c);
    await session.apply(caseState(c, session.addresses));
    const answers = await mapBounded(planned, session.concurrency ?? 1, (p) => session.probe(p.req));
    for (const [i, p] of planned.entries()) {
      const answer = answers[i] as boolean | null | ProbeAnswer;
      const { allowed, note = p.note } =
        typeof answer === 'object' && answer !== null ? answer : { allowed: answer };
      const r: ProbeResult = {
        from: p.req.from,
        to: p.req.to,
        port: p.reportPort,
        protocol: p.req.protocol,
        allowed,
        ...(p.expected !== undefined ? { expected: p.expected } : {}),
        ...(p.loopback ? { loopback: true } : {}),
        ...(p.req.service ? { viaService: p.req.service, backendPort: p.req.port } : {}),
        ...(note ? { note } : {}),
      };
      report.results.push(r);
      report.counts.probes++;
      if (allowed === null) report.counts.skipped++;
      if (p.expected === undefined || p.expected === null || allowed === null) continue;
      if (p.loopback) {
        if (allowed !== p.expected) report.loopbackMismatches.push(r);
        continue;
      }
      report.counts.compared++;
      if (allowed === p.expected) report.counts.matched++;
      else report.mismatches.push(r);
    }
    if (c.expect) report.pass = report.mismatches.length === 0;
  } catch (err) {
    report.pass = c.expect ? false : null;
    report.error = err instanceof WeirError ? err.toString() : String(err);
    if (err instanceof WeirError) report.errorCode = err.code;
  }
  return report;
}

function l7Kind(p: CaseProbe): (typeof l7ProbeKinds)[number] | undefined {
  return l7ProbeKinds.find((k) => p.raw?.[k.field] !== undefined);
}

function httpProbe(c: ConformanceCase, p: CaseProbe): HttpProbe {
  const h = p.raw?.http as Record<string, unknown> | undefined;
  const where = `${c.file}: probe ${p.id ?? '?'}: http`;
  if (!h || typeof h.method !== 'string' || typeof h.path !== 'string')
    throw new WeirError('ERR_CONFORMANCE_CASE', `${where} needs a string method and path`);
  const headers = h.headers as Record<string, unknown> | undefined;
  if (headers !== undefined && (typeof headers !== 'object' || Object.values(headers).some((v) => typeof v !== 'string')))
    throw new WeirError('ERR_CONFORMANCE_CASE', `${where}.headers must map names to string values`);
  return {
    method: h.method,
    path: h.path,
    ...(typeof h.host === 'string' ? { host: h.host } : {}),
    ...(headers ? { headers: headers as Record<string, string> } : {}),
  };
}

function dnsProbe(c: ConformanceCase, p: CaseProbe): DnsProbe {
  const d = p.raw?.dns as Record<string, unknown> | undefined;
  if (!d || typeof d.query !== 'string' || d.query === '' || (d.type !== undefined && typeof d.type !== 'string'))
    throw new WeirError(
      'ERR_CONFORMANCE_CASE',
      `${c.file}: probe ${p.id ?? '?'}: dns needs a string query (and type, default A)`,
    );
  return { query: d.query, type: (d.type as string | undefined) ?? 'A' };
}

function fqdnProbe(c: ConformanceCase, p: CaseProbe): FqdnProbe {
  const raw = p.raw ?? {};
  const where = `${c.file}: probe ${p.id ?? '?'}`;
  if (typeof raw.fqdn !== 'string' || raw.fqdn === '')
    throw new WeirError('ERR_CONFORMANCE_CASE', `${where}: fqdn must be a name`);
  if (raw.resolveFirst !== true) return { name: raw.fqdn, resolveFirst: false };
  const r = raw.resolver as Record<string, unknown> | undefined;
  if (!r || typeof r.server !== 'string')
    throw new WeirError('ERR_CONFORMANCE_CASE', `${where}: resolveFirst needs resolver.server`);
  return {
    name: raw.fqdn,
    resolveFirst: true,
    resolver: {
      server: r.server,
      port: typeof r.port === 'number' ? r.port : 53,
      protocol: r.protocol === 'TCP' ? 'TCP' : 'UDP',
      type: typeof r.type === 'string' ? r.type : 'A',
    },
  };
}

/** Why a DNS observation contradicts the expected answer, or undefined when it agrees. */
function dnsMismatch(what: string, want: ExpectedDns | undefined, got: DnsObservation | undefined): string | undefined {
  if (!want) return undefined;
  if (want.rcode !== undefined && got?.rcode !== want.rcode)
    return `${what} answered ${got?.rcode ?? 'nothing'}, expected ${want.rcode}`;
  if (want.answers !== undefined) {
    const a = [...(got?.answers ?? [])].sort().join(',');
    const b = [...want.answers].sort().join(',');
    if (a !== b) return `${what} gave [${a}], expected [${b}]`;
  }
  return undefined;
}

/** Why an observation contradicts `upstreamSaw`, or undefined when it agrees. */
function upstreamMismatch(e: CaseExpect, seen: HttpObservation | undefined): string | undefined {
  if (!e.upstreamSaw) return undefined;
  const got = seen?.upstreamSaw?.headers;
  if (!got) return 'the server reported nothing it received';
  for (const [name, value] of Object.entries(e.upstreamSaw.headers ?? {}))
    if (got[name.toLowerCase()] !== value)
      return `the server saw ${name}: ${got[name.toLowerCase()] ?? '(absent)'}, expected ${value}`;
  for (const name of e.upstreamSaw.absentHeaders ?? [])
    if (got[name.toLowerCase()] !== undefined)
      return `the server saw ${name}: ${got[name.toLowerCase()]}, expected it absent`;
  return undefined;
}

/**
 * The L7 corpus: each probe of the case runs as written (its kind decides how), steps in
 * ascending order, probes of one step concurrently. Results report the probe object and what was
 * observed; the expectations (matched by probe id) are read only afterwards, to judge.
 */
async function runL7(c: ConformanceCase, session: ProberSession, mode: string): Promise<CaseReport> {
  const report = emptyReport(c, mode);
  try {
    const planned = c.probes.map((p) => {
      const kind = l7Kind(p);
      const where = `${c.file}: probe ${p.id ?? '?'}`;
      if (!kind) throw new WeirError('ERR_CONFORMANCE_CASE', `${where} has none of http, dns, fqdn`);
      const req: ProbeRequest = {
        from: p.from as string,
        to: p.to as string,
        port: p.port,
        protocol: p.protocol,
        kind: kind.kind,
        ...(kind.kind === 'http' || (kind.kind === 'fqdn' && p.raw?.http !== undefined)
          ? { http: httpProbe(c, p) }
          : {}),
        ...(kind.kind === 'dns' ? { dns: dnsProbe(c, p) } : {}),
        ...(kind.kind === 'fqdn' ? { fqdn: fqdnProbe(c, p) } : {}),
      };
      return { p, kind, req, run: session.kinds?.has(kind.kind) === true };
    });
    await session.apply(caseState(c, session.addresses));
    const answers = new Map<(typeof planned)[number], ProbeAnswer>();
    for (const step of [...new Set(planned.map((x) => x.p.step ?? 1))].sort((a, b) => a - b)) {
      const now = planned.filter((x) => (x.p.step ?? 1) === step && x.run);
      const got = await mapBounded(now, session.concurrency ?? 1, (x) => session.probe(x.req));
      now.forEach((x, i) => {
        const a = got[i];
        answers.set(x, typeof a === 'object' && a !== null ? a : { allowed: a ?? null });
      });
    }
    for (const x of planned) {
      const a = answers.get(x);
      const r: ProbeResult = {
        from: x.req.from,
        to: x.req.to,
        port: x.req.port,
        protocol: x.req.protocol,
        allowed: a ? (a.result === undefined ? a.allowed : a.result === 'allowed') : null,
        probe: x.p.raw ?? {},
        result: a?.result ?? (a ? 'error' : 'skipped'),
        ...(a?.http ? { http: a.http } : {}),
        ...(a?.dns ? { dns: a.dns } : {}),
        ...(a?.resolve ? { resolve: a.resolve } : {}),
        ...(a?.note ? { note: a.note } : !a ? { note: x.kind.skipped } : {}),
      };
      report.counts.probes++;
      const e = c.expect?.find((ex) => ex.probe === x.p.id);
      if (e?.result) r.expectedResult = e.result;
      if (e) r.expected = e.allowed;
      report.results.push(r);
      if (r.result === 'skipped') {
        report.counts.skipped++;
        continue;
      }
      if (!e?.result) continue;
      report.counts.compared++;
      const saw =
        r.result === e.result
          ? (upstreamMismatch(e, r.http) ??
            dnsMismatch('the DNS server', e.dns, r.dns) ??
            (e.resolve?.result !== undefined && r.resolve?.result !== e.resolve.result
              ? `the lookup was ${r.resolve?.result ?? 'not made'}, expected ${e.resolve.result}`
              : dnsMismatch('the lookup', e.resolve, r.resolve)))
          : undefined;
      if (r.result === e.result && !saw) report.counts.matched++;
      else report.mismatches.push(saw ? { ...r, note: saw } : r);
    }
    // Nothing judged (every probe skipped) is no pass.
    if (c.expect) report.pass = report.counts.compared === 0 ? null : report.mismatches.length === 0;
  } catch (err) {
    report.pass = c.expect ? false : null;
    report.error = err instanceof WeirError ? err.toString() : String(err);
    if (err instanceof WeirError) report.errorCode = err.code;
    // The probes still appear, each not run because of the error.
    if (report.results.length === 0)
      for (const p of c.probes) {
        report.results.push({
          from: p.from ?? '',
          to: p.to ?? '',
          port: p.port,
          protocol: p.protocol,
          allowed: null,
          probe: p.raw ?? {},
          result: 'skipped',
          note: `not run: ${err instanceof WeirError ? err.code : 'the case failed'}`,
        });
        report.counts.probes++;
        report.counts.skipped++;
      }
  }
  return report;
}

/** Runs `fn` over `items`, at most `limit` at a time; answers in input order. */
async function mapBounded<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++)
      try {
        out[i] = await fn(items[i] as T);
      } catch (err) {
        next = items.length; // one failure ends the case: start nothing more
        throw err;
      }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

export async function runCases(opts: RunOptions): Promise<RunReport> {
  const files = opts.files ?? (opts.casesDir ? listCaseFiles(opts.casesDir) : []);
  if (files.length === 0)
    throw new WeirError('ERR_CONFORMANCE_NO_CASES', `no case files found in '${opts.casesDir ?? ''}'`);
  const cases = files.map(loadCase);
  // Group by topology, keeping file order within each group and in the final report.
  const groups = new Map<string, ConformanceCase[]>();
  for (const c of cases) groups.set(c.topology.key, [...(groups.get(c.topology.key) ?? []), c]);
  const byFile = new Map<string, CaseReport>();
  for (const group of groups.values()) {
    const first = group[0] as ConformanceCase;
    const session = await opts.proberFactory(first.topology);
    try {
      for (const c of group) byFile.set(c.file, await runOne(c, session, opts.mode));
    } finally {
      await session.close();
    }
  }
  return { cases: cases.map((c) => byFile.get(c.file) as CaseReport) };
}

export { defaultAddresses };

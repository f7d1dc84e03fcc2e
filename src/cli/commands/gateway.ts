// Gateway API on the command line: `weir gateway list` (Gateways, their address, listeners and
// attached routes), `weir route list` (HTTPRoutes and GRPCRoutes with their parents' conditions)
// and `weir route trace` (which rule and backend would serve a request, and why), live from the
// agent or offline from manifests (-f), with the same compiler and router the proxy uses.
import { Command } from 'commander';
import { agentClient } from '../../agent/client.js';
import type { Compiled, Condition, EntryPolicy, TableEntry } from '../../gateway/compile.js';
import { routeGateway, routeMesh, type RouteDecision, type RouteRequest } from '../../gateway/route.js';
import { gatewayView, type GatewayView } from '../../gateway/stored.js';
import { fillClass, weirGatewayClass } from '../../gateway/corpus.js';
import { loadManifests } from '../../k8s/index.js';
import { WeirError } from '../../shared/errors.js';
import { printResult, type OutputFormat } from '../output.js';
import { labOption, outputOption } from './lab.js';

const view = (lab: string) => agentClient(lab).call<GatewayView>('GET', '/v1/gateway');

const condText = (cs: Condition[], type: string) => cs.find((c) => c.type === type)?.status ?? 'Unknown';

export function gatewayCommand(): Command {
  const cmd = new Command('gateway').summary('Gateways: addresses, listeners, attached routes');
  cmd
    .command('list')
    .summary('list Gateways with their address, listeners and attached routes')
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (o: { lab: string; output: OutputFormat }) => {
      const v = await view(o.lab);
      const gws = v.compiled.gateways;
      printResult(o.output, { items: gws }, gws, [
        { header: 'namespace', get: (g) => g.namespace },
        { header: 'name', get: (g) => g.name },
        { header: 'class', get: (g) => g.className },
        { header: 'address', get: (g) => g.address ?? '<pending>' },
        { header: 'programmed', get: (g) => condText(g.conditions, 'Programmed') },
        {
          header: 'listeners',
          get: (g) =>
            g.listeners
              .map(
                (l) =>
                  `${l.name}(${l.attachedRoutes}${condText(l.conditions, 'Programmed') === 'True' ? '' : ',not programmed'})`,
              )
              .join(' '),
        },
      ]);
    });
  return cmd;
}

interface TraceOptions {
  lab: string;
  output: OutputFormat;
  filename?: string[];
  gateway?: string;
  service?: string;
  port?: string;
  host?: string;
  path: string;
  method: string;
  header: string[];
  fromNamespace?: string;
}

export function routeCommand(): Command {
  const cmd = new Command('route').summary(
    'HTTPRoutes and GRPCRoutes: status, and which rule serves a request',
  );
  cmd
    .command('list')
    .summary('list HTTPRoutes and GRPCRoutes with their parents and conditions')
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (o: { lab: string; output: OutputFormat }) => {
      const v = await view(o.lab);
      const rows = v.compiled.routes.flatMap((r) =>
        (r.parents.length > 0 ? r.parents : [undefined]).map((p) => ({ r, p })),
      );
      printResult(o.output, { items: v.compiled.routes }, rows, [
        { header: 'kind', get: (x) => x.r.kind },
        { header: 'namespace', get: (x) => x.r.namespace },
        { header: 'name', get: (x) => x.r.name },
        {
          header: 'parent',
          get: (x) =>
            x.p
              ? `${x.p.parentRef.kind} ${x.p.parentRef.namespace}/${x.p.parentRef.name}${x.p.parentRef.sectionName ? `/${x.p.parentRef.sectionName}` : ''}`
              : '<none of weir>',
        },
        { header: 'accepted', get: (x) => (x.p ? reasonText(x.p.conditions, 'Accepted') : '') },
        { header: 'resolvedrefs', get: (x) => (x.p ? reasonText(x.p.conditions, 'ResolvedRefs') : '') },
      ]);
    });
  cmd
    .command('trace')
    .summary('which route rule and backend would serve a request, and why')
    .description(
      'judges a request with the compiled route tables: --gateway NS/NAME (a listener port, default 80) or ' +
        '--service NS/NAME --port P (a mesh route), --host, --path, --method, --header k=v; live from the ' +
        "lab's agent, or offline from manifests with -f",
    )
    .option('-f, --filename <path...>', 'judge against these manifests instead of the lab')
    .option('--gateway <ns/name>', 'a request to this Gateway')
    .option('--service <ns/name>', 'a request to this Service (GAMMA routes)')
    .option('--port <port>', 'the listener or Service port (default 80)')
    .option('--host <host>', 'the Host header (default: the Gateway address or the Service name)')
    .option('--path <path>', 'path and query', '/')
    .option('--method <method>', 'the request method', 'GET')
    .option('--header <k=v...>', 'request headers', [])
    .option('--from-namespace <ns>', "mesh: the client pod's namespace (consumer routes)")
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (o: TraceOptions) => {
      if (!o.gateway === !o.service)
        throw new WeirError('ERR_CLI_ARGUMENT', 'give one of --gateway or --service', {
          location: { field: '--gateway' },
        });
      const v = o.filename ? await offlineView(o.filename) : await view(o.lab);
      const result = traceRequest(v.compiled, o);
      if (o.output === 'json' || o.output === 'yaml') printResult(o.output, result, [], []);
      else process.stdout.write(traceText(result));
    });
  return cmd;
}

const reasonText = (cs: Condition[], type: string) => {
  const c = cs.find((x) => x.type === type);
  return c ? `${c.status}${c.status === 'True' ? '' : ` (${c.reason})`}` : 'Unknown';
};

async function offlineView(files: string[]): Promise<GatewayView> {
  const ms = await loadManifests(files);
  const objects = [fillClass(weirGatewayClass), ...ms.map((m) => m.raw)].map((raw, i) => {
    const m = raw as { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } };
    const namespaced = m.kind !== 'Namespace' && m.kind !== 'GatewayClass';
    return {
      apiVersion: m.apiVersion,
      kind: m.kind,
      name: m.metadata.name,
      ...(namespaced ? { namespace: m.metadata.namespace ?? 'default' } : {}),
      file: ms[i - 1]?.file ?? '(weir)',
      object: raw,
    };
  });
  // Offline, Gateways get the addresses the API would give an empty lab.
  let n = 10;
  for (const x of objects)
    if (x.kind === 'Gateway')
      (x as { object: unknown }).object = {
        ...(x.object as object),
        status: { addresses: [{ type: 'IPAddress', value: `198.51.100.${n++}` }] },
      };
  const namespaces = new Map<string, Record<string, string>>([['default', {}]]);
  return gatewayView(objects, namespaces);
}

export interface TraceResult {
  request: RouteRequest;
  target: string;
  listener?: string;
  decision: string;
  status: number;
  route?: string;
  rule?: string;
  backend?: string;
  /** The BackendTrafficPolicy in force for the rule and what it sets (forward only). */
  policy?: string;
  detail: string;
  /** The request as the backend would see it (forward only). */
  upstream?: { method: string; path: string; host: string; headers: Record<string, string[]> };
}

export function traceRequest(c: Compiled, o: TraceOptions): TraceResult {
  const port = o.port === undefined ? 80 : Number(o.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new WeirError('ERR_CLI_ARGUMENT', `--port ${o.port} is not a port`, {
      location: { field: '--port' },
    });
  const headers: Record<string, string[]> = {};
  for (const h of o.header) {
    const eq = h.indexOf('=');
    if (eq <= 0)
      throw new WeirError('ERR_CLI_ARGUMENT', `--header ${h}: give name=value`, {
        location: { field: '--header' },
      });
    const k = h.slice(0, eq).toLowerCase();
    headers[k] = [...(headers[k] ?? []), h.slice(eq + 1)];
  }
  let decision: RouteDecision;
  let target: string;
  let req: RouteRequest;
  if (o.gateway) {
    const table = c.gatewayPorts.find((t) => t.gateway === o.gateway && t.port === port);
    const gw = c.gateways.find((g) => `${g.namespace}/${g.name}` === o.gateway);
    if (!gw || !table)
      throw new WeirError(
        'ERR_GATEWAY_NOT_FOUND',
        `Gateway ${o.gateway} ${gw ? `serves nothing on port ${port}` : 'is not a Gateway of weir'}`,
        {
          location: { field: '--gateway' },
        },
      );
    target = `Gateway ${o.gateway}:${port} (${gw.address ?? 'no address'})`;
    req = { method: o.method, path: o.path, host: o.host ?? gw.address ?? '', headers };
    decision = routeGateway(table, req, () => 0);
  } else {
    const table = c.meshPorts.find((t) => t.service === o.service && t.port === port);
    if (!table)
      throw new WeirError(
        'ERR_GATEWAY_NOT_FOUND',
        `no route has Service ${o.service} port ${port} as its parent`,
        {
          location: { field: '--service' },
        },
      );
    target = `Service ${o.service}:${port}`;
    req = {
      method: o.method,
      path: o.path,
      host: o.host ?? (o.service ?? '').split('/')[1] ?? '',
      headers,
      ...(o.fromNamespace ? { fromNamespace: o.fromNamespace } : {}),
    };
    decision = routeMesh(table, req, () => 0);
  }
  return describe(decision, req, target);
}

const entryName = (e: TableEntry) => `${e.route.kind} ${e.route.namespace}/${e.route.name}`;
const ruleName = (e: TableEntry) =>
  `rule ${e.ruleIndex}${e.ruleName ? ` (${e.ruleName})` : ''} match ${e.matchIndex}`;

function matchText(e: TableEntry): string {
  const m = e.match;
  const parts = [`path ${m.path.type} ${m.path.value}`];
  if (m.method) parts.push(`method ${m.method}`);
  for (const h of m.headers) parts.push(`header ${h.name} ${h.type === 'Exact' ? '=' : '~'} ${h.value}`);
  for (const q of m.queryParams) parts.push(`query ${q.name} ${q.type === 'Exact' ? '=' : '~'} ${q.value}`);
  if (e.hostnames.length > 0) parts.push(`hostnames ${e.hostnames.join(',')}`);
  return parts.join(', ');
}

function describe(d: RouteDecision, request: RouteRequest, target: string): TraceResult {
  const base = {
    request,
    target,
    ...(d.listener ? { listener: d.listener } : {}),
    status: d.kind === 'forward' ? 200 : d.status,
  };
  switch (d.kind) {
    case 'no-route':
      return { ...base, decision: 'no route', detail: d.reason };
    case 'redirect':
      return {
        ...base,
        decision: 'redirect',
        route: entryName(d.entry),
        rule: ruleName(d.entry),
        detail: `${d.status} Location: ${d.location} (matched ${matchText(d.entry)})`,
      };
    case 'cors-preflight':
      return {
        ...base,
        decision: 'CORS preflight answered',
        route: entryName(d.entry),
        rule: ruleName(d.entry),
        detail: d.headers.map(([k, v]) => `${k}: ${v}`).join('; '),
      };
    case 'error':
      return {
        ...base,
        decision: 'error',
        route: entryName(d.entry),
        rule: ruleName(d.entry),
        ...(d.backend ? { backend: `${d.backend.namespace}/${d.backend.name}:${d.backend.port}` } : {}),
        detail: `500: ${d.reason}`,
      };
    case 'forward': {
      const total = d.entry.backends.reduce((n, b) => n + b.weight, 0);
      const weights = d.entry.backends
        .map((b) => `${b.namespace}/${b.name}:${b.port} ${b.weight}/${total}${b.invalid ? ' (invalid)' : ''}`)
        .join(', ');
      return {
        ...base,
        status: 200,
        decision: 'forward',
        route: entryName(d.entry),
        rule: ruleName(d.entry),
        backend: `${d.backend.namespace}/${d.backend.name}:${d.backend.port}`,
        ...(d.entry.policy ? { policy: policyText(d.entry.policy) } : {}),
        detail: `matched ${matchText(d.entry)}; backends ${weights}`,
        upstream: d.request,
      };
    }
  }
}

/** What a BackendTrafficPolicy sets, in a line: `ns/name: rate limit 5/s; circuit breaker …`. */
export function policyText(p: EntryPolicy): string {
  const ms = (n: number) => (n % 1000 === 0 ? `${n / 1000}s` : `${n}ms`);
  const parts: string[] = [];
  const rl = p.rateLimit;
  if (rl?.default) parts.push(`rate limit ${rl.default.requests}/${ms(rl.default.unitMs)}`);
  for (const r of rl?.selectors ?? [])
    parts.push(`rate limit ${r.requests}/${ms(r.unitMs)} for ${r.clientSelectors.length} client selector(s)`);
  const cb = p.circuitBreaker;
  if (cb)
    parts.push(
      `circuit breaker connections ${cb.maxConnections}, pending ${cb.maxPendingRequests}, requests ${cb.maxParallelRequests}, retries ${cb.maxParallelRetries}`,
    );
  const hc = p.passiveHealthCheck;
  if (hc)
    parts.push(
      `outlier detection 5xx×${hc.consecutive5xx}, gateway errors×${hc.consecutiveGateway}, ejection ${ms(hc.baseEjectionMs)} × ejections, max ${hc.maxEjectionPercent}%`,
    );
  const r = p.retry;
  if (r)
    parts.push(
      `retry ${r.numRetries} on ${r.triggers.join(',')}${r.statusCodes.length ? ` ${r.statusCodes.join(',')}` : ''}${r.perTryTimeoutMs ? `, per try ${ms(r.perTryTimeoutMs)}` : ''}${r.budget ? `, budget ${r.budget.percent}% min ${r.budget.minRetryConcurrency}` : ''}`,
    );
  const t = p.timeout;
  if (t) {
    const ts = [
      t.connectMs ? `connect ${ms(t.connectMs)}` : '',
      t.requestMs ? `request ${ms(t.requestMs)}` : '',
      t.idleMs ? `idle ${ms(t.idleMs)}` : '',
      t.maxConnectionDurationMs ? `max connection ${ms(t.maxConnectionDurationMs)}` : '',
    ].filter(Boolean);
    if (ts.length) parts.push(`timeout ${ts.join(', ')}`);
  }
  return `${p.policy}: ${parts.join('; ') || 'nothing weir runs'}`;
}

function traceText(r: TraceResult): string {
  const lines = [
    `${r.request.method} ${r.request.host}${r.request.path} → ${r.target}${r.listener ? ` listener ${r.listener}` : ''}`,
    `  ${r.decision}${r.status ? ` (${r.status})` : ''}`,
  ];
  if (r.route) lines.push(`  route:   ${r.route}, ${r.rule}`);
  if (r.backend) lines.push(`  backend: ${r.backend}`);
  if (r.policy) lines.push(`  policy:  ${r.policy}`);
  lines.push(`  why:     ${r.detail}`);
  if (r.upstream) lines.push(`  sent as: ${r.upstream.method} ${r.upstream.host}${r.upstream.path}`);
  return lines.join('\n') + '\n';
}

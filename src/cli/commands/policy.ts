// `weir policy trace`: which rule allows or denies a connection, for the egress of the source and
// the ingress of the destination. Live: the agent's engine view, and with --datapath the same
// lookup on what the kernel's maps hold. Offline (-f): the engine on the given manifests.
import { Command, Option } from 'commander';
import { loadManifests, podPorts, type Manifest, type Pod } from '../../k8s/index.js';
import { defaultLabName } from '../../lab/lab.js';
import { isPolicyKind } from '../../policy/api/index.js';
import { formatRuleRef, type Policy } from '../../policy/api/types.js';
import { computePolicy, type EngineInput } from '../../policy/engine.js';
import {
  trace,
  type DirectionTrace,
  type HttpTrace,
  type TraceHttpRequest,
  type TraceResult,
} from '../../policy/trace.js';
import type { HttpRule } from '../../policy/l7/types.js';
import { WeirError } from '../../shared/errors.js';
import { agentClient } from '../../agent/client.js';
import type { OutputFormat } from '../output.js';
import { labOption, outputOption } from './lab.js';
import { fetchDiff, printDiff } from './policy-diff.js';

/** Policies, Namespaces and Pods from manifests (the shared loader validates them). Pods without
 * status.podIP get lab-style addresses (10.244.0.2, .3, … in file order). */
export function manifestEnvironment(manifests: Manifest[]): EngineInput {
  const input: EngineInput = { namespaces: [], endpoints: [], nodeIPs: ['10.244.0.1'], policies: [] };
  for (const m of manifests) {
    if (isPolicyKind(m.kind)) input.policies.push(m.object as Policy);
    else if (m.kind === 'Namespace')
      input.namespaces.push({
        name: m.metadata.name,
        labels: { ...(m.metadata.labels ?? {}), 'kubernetes.io/metadata.name': m.metadata.name },
      });
    else if (m.kind === 'Pod') {
      const pod = m.object as Pod;
      const status = ((m.raw as { status?: { podIP?: string } }).status ?? {}) as { podIP?: string };
      const n = input.endpoints.length;
      input.endpoints.push({
        id: n + 1,
        namespace: m.metadata.namespace ?? 'default',
        pod: m.metadata.name,
        labels: m.metadata.labels ?? {},
        ips: [status.podIP ?? `10.244.0.${n + 2}`],
        namedPorts: podPorts(pod).flatMap((p) =>
          p.name ? [{ name: p.name, port: p.containerPort, protocol: p.protocol }] : [],
        ),
      });
    }
  }
  for (const ns of new Set(input.endpoints.map((e) => e.namespace)))
    if (!input.namespaces.some((n) => n.name === ns))
      input.namespaces.push({ name: ns, labels: { 'kubernetes.io/metadata.name': ns } });
  return input;
}

function parsePortSpec(s: string): { port: number; protocol: 'TCP' | 'UDP' | 'SCTP' } {
  const m = /^(\d+)(?:\/(tcp|udp|sctp))?$/i.exec(s);
  const port = Number(m?.[1]);
  if (!m || port < 1 || port > 65535)
    throw new WeirError('ERR_CLI_ARGUMENT', `'${s}' is not PORT[/PROTOCOL] (e.g. 80/TCP)`, {
      location: { field: '--port' },
    });
  return { port, protocol: (m[2]?.toUpperCase() ?? 'TCP') as 'TCP' };
}

function sideText(dir: string, who: string, d: DirectionTrace): string {
  const why =
    d.verdict === 'allowed' || d.verdict === 'denied'
      ? `${d.verdict} by ${d.rule ? formatRuleRef(d.rule) : 'an unnamed entry'}`
      : d.verdict === 'default-deny'
        ? 'default-deny: no rule allows it'
        : 'not enforced';
  const code = d.dropCode ? ` (drop ${d.dropCode})` : '';
  const proxy =
    (d.proxyPort ? `, redirected to proxy port ${d.proxyPort} (L7 rules decide each request)` : '') +
    (d.authRequired ? ', once the two identities authenticated (authentication: required; else 189)' : '');
  return `  ${dir.padEnd(7)} ${who}: ${why}${code}${proxy}${d.note ? ` [${d.note}]` : ''}`;
}

/** An HTTP rule as written in the policy: {method: GET, path: /public}. */
function httpRuleText(r: HttpRule): string {
  const parts: string[] = [];
  if (r.method) parts.push(`method: ${r.method}`);
  if (r.path) parts.push(`path: ${r.path}`);
  if (r.host) parts.push(`host: ${r.host}`);
  if (r.headers?.length) parts.push(`headers: [${r.headers.join(', ')}]`);
  if (r.headerMatches?.length)
    parts.push(`headerMatches: [${r.headerMatches.map((m) => m.name).join(', ')}]`);
  return `{${parts.join(', ')}}`;
}

function httpText(h: HttpTrace): string {
  const req = `HTTP ${h.request.method} ${h.request.path} (Host ${h.request.host})`;
  if (h.verdict === 'allowed') {
    const by = h.rule ? formatRuleRef(h.rule) : 'an unnamed rule';
    const what =
      h.reason === 'l4_allow'
        ? ' (L4 only on this port for this peer: every request)'
        : h.httpRule
          ? ` toPorts[].rules.http[${h.httpRule.index}] ${httpRuleText(h.httpRule.rule)}`
          : '';
    return `          ${req}: allowed by ${by}${what}`;
  }
  const why =
    h.reason === 'no_rule_set'
      ? 'no L7 rule applies to this peer'
      : h.reason === 'no_policy'
        ? 'the port has no L7 policy'
        : 'no HTTP rule matches';
  const of = h.candidates?.length ? ` (HTTP rules of ${h.candidates.map(formatRuleRef).join(', ')})` : '';
  return `          ${req}: DENIED, the proxy answers 403 Access denied: ${why}${of}`;
}

export function traceText(r: TraceResult, http?: TraceHttpRequest): string {
  const what = http ? ` ${http.method} ${http.path}` : '';
  const lines = [
    `${r.from.name} (identity ${r.from.identity}) -> ${r.to.name} (identity ${r.to.identity}) ${r.protocol}/${r.port}${what}: ${r.allowed ? 'ALLOWED' : 'DENIED'}`,
  ];
  for (const [dir, who, d] of [
    ['egress', r.from.name, r.egress],
    ['ingress', r.to.name, r.ingress],
  ] as const) {
    lines.push(sideText(dir, who, d));
    if (d.http) lines.push(httpText(d.http));
    else if (http && d.verdict === 'allowed' && !d.proxyPort)
      lines.push('          HTTP: not inspected here (no L7 rules on this port for this peer)');
  }
  for (const f of r.fqdn ?? [])
    lines.push(
      `  fqdn: ${r.to.name} was learned for ${f.name}. from a DNS answer` +
        (f.endpointId !== undefined ? ` to endpoint ${f.endpointId}` : '') +
        (f.ttl !== undefined ? ` (TTL ${f.ttl} s)` : '') +
        (f.expiresAt !== undefined ? `, expires ${new Date(f.expiresAt).toISOString()}` : '') +
        ' (toFQDNs selects it by this name)',
    );
  return lines.join('\n') + '\n';
}

export function policyCommand(): Command {
  const cmd = new Command('policy').description('network policy tools');
  cmd
    .command('trace')
    .description(
      'show whether a new connection is allowed and which policy rule decides it: from the live agent, ' +
        'or offline from manifests given with -f',
    )
    .requiredOption('--from <peer>', 'source: ns/pod, an IP, a CIDR, world or host')
    .requiredOption('--to <peer>', 'destination: ns/pod, an IP, a CIDR, world or host')
    .requiredOption('--port <port/proto>', 'destination port and protocol, e.g. 80/TCP')
    .option('-f, --filename <path...>', 'offline: policy, Pod and Namespace manifests (no lab needed)')
    .option('--datapath', "live: also read the verdict back from the kernel's maps and compare")
    .option('--http-method <method>', 'judge an HTTP request on ports with L7 rules (default GET)')
    .option('--http-path <path>', 'its request target, path and query (default /)')
    .option(
      '--http-header <field>',
      "a request header 'Name: value' (repeat for more)",
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--http-host <host>', "its Host header (default: the destination's address)")
    .addOption(new Option('--lab <name>', 'lab name (env WEIR_LAB)').default(defaultLabName()))
    .addOption(new Option('-o, --output <format>', 'text or json').choices(['text', 'json']).default('text'))
    .action(
      async (o: {
        from: string;
        to: string;
        port: string;
        filename?: string[];
        datapath?: boolean;
        httpMethod?: string;
        httpPath?: string;
        httpHeader?: string[];
        httpHost?: string;
        lab: string;
        output: string;
      }) => {
        const { port, protocol } = parsePortSpec(o.port);
        const wantsHttp =
          o.httpMethod !== undefined ||
          o.httpPath !== undefined ||
          o.httpHeader !== undefined ||
          o.httpHost !== undefined;
        const http: TraceHttpRequest | undefined = wantsHttp
          ? {
              method: o.httpMethod ?? 'GET',
              path: o.httpPath ?? '/',
              ...(o.httpHost !== undefined ? { host: o.httpHost } : {}),
              ...(o.httpHeader ? { headers: o.httpHeader } : {}),
            }
          : undefined;
        const req = { from: o.from, to: o.to, port, protocol, ...(http ? { http } : {}) };
        let engine: TraceResult;
        let datapath: TraceResult | undefined;
        if (o.filename && o.filename.length > 0) {
          if (o.datapath)
            throw new WeirError('ERR_CLI_ARGUMENT', '--datapath reads a live lab; it does not go with -f', {
              location: { field: '--datapath' },
            });
          const input = manifestEnvironment(await loadManifests(o.filename));
          if (input.endpoints.length === 0)
            throw new WeirError('ERR_POLICY_TRACE_NO_PODS', 'no pods to trace: give Pod manifests with -f');
          engine = trace({ input, output: computePolicy(input) }, req);
        } else {
          const answer = await agentClient(o.lab).call<{ engine: TraceResult; datapath?: TraceResult }>(
            'POST',
            '/v1/trace',
            { ...req, datapath: o.datapath === true },
          );
          engine = answer.engine;
          datapath = answer.datapath;
        }
        if (o.output === 'json') {
          process.stdout.write(JSON.stringify(datapath ? { engine, datapath } : engine, null, 2) + '\n');
          return;
        }
        process.stdout.write(traceText(engine, http));
        if (datapath) {
          const agree =
            datapath.allowed === engine.allowed &&
            datapath.egress.proxyPort === engine.egress.proxyPort &&
            datapath.ingress.proxyPort === engine.ingress.proxyPort;
          process.stdout.write(`datapath (live maps):\n${traceText(datapath, http)}`);
          process.stdout.write(agree ? 'engine and datapath agree\n' : 'ENGINE AND DATAPATH DISAGREE\n');
          if (!agree) process.exitCode = 2;
        }
      },
    );
  cmd.addCommand(diffCommand());
  return cmd;
}

function diffCommand(): Command {
  return new Command('diff')
    .summary('which connections would change verdict if manifests were applied (nothing is applied)')
    .description(
      'which connections between the pods would change verdict (allowed <-> denied), with the rule ' +
        'deciding before and after, if the files were applied (objects added or replaced by name), ' +
        'replaced every policy (--replace), or were deleted (--delete); every ordered pair of pods x ' +
        'every port the destination declares. Validated as apply validates; nothing is applied',
    )
    .requiredOption('-f, --filename <path...>', 'files or directories (.yaml, .yml, .json)')
    .addOption(new Option('--replace', 'the files replace every policy in force').conflicts('delete'))
    .addOption(new Option('--delete', 'the objects of the files are deleted').conflicts('replace'))
    .option('--entities', 'also world and host as peers of every pod')
    .addOption(labOption())
    .addOption(outputOption())
    .action(
      async (o: {
        filename: string[];
        replace?: boolean;
        delete?: boolean;
        entities?: boolean;
        lab: string;
        output: OutputFormat;
      }) => {
        const manifests = await loadManifests(o.filename);
        const mode = o.replace ? 'replace' : o.delete ? 'delete' : 'apply';
        printDiff(await fetchDiff(o.lab, manifests, mode, o.entities === true), o.output);
      },
    );
}

export function registerPolicyCommands(program: Command): void {
  program.addCommand(policyCommand());
}

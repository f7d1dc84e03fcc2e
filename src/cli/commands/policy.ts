// `weir policy trace`: which rule allows or denies a connection. Computes the policy of the
// manifests given with -f (plus the pods of the current lab, when the caller provides a way to
// read them) and looks the connection up in the resulting entries, like the datapath would.
import { readFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { parseAllDocuments } from 'yaml';
import { isPolicyKind, validatePolicy } from '../../policy/api/index.js';
import { formatRuleRef, type Policy } from '../../policy/api/types.js';
import { computePolicy, type EngineEndpoint, type EngineNamespace } from '../../policy/engine.js';
import { trace, type DirectionTrace, type TraceResult } from '../../policy/trace.js';
import { ValidationError, WeirError } from '../../shared/errors.js';

/** Pods and namespaces that policies apply to (a lab's, or the live agent's). */
export interface PolicyEnvironment {
  namespaces: EngineNamespace[];
  endpoints: EngineEndpoint[];
  nodeIPs: string[];
  policies?: Policy[];
}

export interface PolicyCommandDeps {
  /** Reads the current environment (e.g. the lab state); undefined when there is none. */
  loadEnvironment?: (opts: { lab?: string }) => Promise<PolicyEnvironment | undefined>;
}

type Obj = {
  kind?: unknown;
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string> };
  [k: string]: unknown;
};

/** Policies, Namespaces and Pods from manifest files. Pods without status.podIP get lab-style IPs. */
export async function readPolicyManifests(
  files: string[],
): Promise<PolicyEnvironment & { policies: Policy[] }> {
  const env = {
    namespaces: [] as EngineNamespace[],
    endpoints: [] as EngineEndpoint[],
    nodeIPs: [] as string[],
    policies: [] as Policy[],
  };
  const problems: WeirError[] = [];
  for (const file of files) {
    const text = await readFile(file, 'utf8').catch(() => {
      throw new WeirError('ERR_POLICY_FILE', 'cannot read file', { location: { file } });
    });
    for (const doc of parseAllDocuments(text)) {
      if (doc.errors[0])
        throw new WeirError('ERR_POLICY_YAML', `invalid YAML: ${doc.errors[0].message}`, {
          location: { file },
        });
      const o = doc.toJS() as Obj | null;
      if (!o) continue;
      const items = o.kind === 'List' && Array.isArray(o.items) ? (o.items as Obj[]) : [o];
      for (const it of items) {
        const ns = it.metadata?.namespace;
        const object = `${String(it.kind)} ${ns ? ns + '/' : ''}${it.metadata?.name ?? ''}`;
        try {
          if (isPolicyKind(it.kind)) env.policies.push(validatePolicy(it, { file, object }));
          else if (it.kind === 'Namespace')
            env.namespaces.push({ name: String(it.metadata?.name), labels: it.metadata?.labels ?? {} });
          else if (it.kind === 'Pod') env.endpoints.push(podEndpoint(it, env.endpoints.length));
          else
            throw new WeirError(
              'ERR_POLICY_KIND_UNKNOWN',
              `kind ${String(it.kind)} is not a policy, Namespace or Pod`,
              { location: { file, object } },
            );
        } catch (err) {
          if (err instanceof ValidationError) problems.push(...err.problems);
          else if (err instanceof WeirError) problems.push(err);
          else throw err;
        }
      }
    }
  }
  if (problems.length > 0) throw new ValidationError(problems);
  return env;
}

function podEndpoint(o: Obj, n: number): EngineEndpoint {
  const spec = (o.spec ?? {}) as {
    containers?: { ports?: { name?: string; containerPort: number; protocol?: string }[] }[];
    serviceAccountName?: string;
  };
  const status = (o.status ?? {}) as { podIP?: string };
  return {
    id: n + 1,
    namespace: o.metadata?.namespace ?? 'default',
    pod: String(o.metadata?.name),
    labels: o.metadata?.labels ?? {},
    ips: [status.podIP ?? `10.244.0.${n + 2}`],
    namedPorts: (spec.containers ?? []).flatMap((c) =>
      (c.ports ?? []).flatMap((p) =>
        p.name ? [{ name: p.name, port: p.containerPort, protocol: (p.protocol ?? 'TCP') as 'TCP' }] : [],
      ),
    ),
    ...(spec.serviceAccountName ? { serviceAccount: spec.serviceAccountName } : {}),
  };
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
  return `  ${dir.padEnd(7)} ${who}: ${why}${code}${d.note ? ` [${d.note}]` : ''}`;
}

export function traceText(r: TraceResult): string {
  return (
    [
      `${r.from.name} (identity ${r.from.identity}) -> ${r.to.name} (identity ${r.to.identity}) ${r.protocol}/${r.port}: ${r.allowed ? 'ALLOWED' : 'DENIED'}`,
      sideText('egress', r.from.name, r.egress),
      sideText('ingress', r.to.name, r.ingress),
    ].join('\n') + '\n'
  );
}

export function policyCommand(deps: PolicyCommandDeps = {}): Command {
  const cmd = new Command('policy').description('network policy tools');
  cmd
    .command('trace')
    .description('show whether a new connection is allowed and which policy rule decides it')
    .requiredOption('--from <peer>', 'source: ns/pod, an IP, a CIDR, world or host')
    .requiredOption('--to <peer>', 'destination: ns/pod, an IP, a CIDR, world or host')
    .requiredOption('--port <port/proto>', 'destination port and protocol, e.g. 80/TCP')
    .option('-f, --filename <file...>', 'policy (and Pod/Namespace) manifests', [])
    .option('--lab <name>', 'lab whose pods to use (when available)')
    .addOption(
      new Option('-o, --output <format>', 'text or json').choices(['text', 'json', 'table']).default('text'),
    )
    .action(
      async (o: {
        from: string;
        to: string;
        port: string;
        filename: string[];
        lab?: string;
        output: string;
      }) => {
        const { port, protocol } = parsePortSpec(o.port);
        const files = await readPolicyManifests(o.filename);
        const env = deps.loadEnvironment
          ? await deps.loadEnvironment(o.lab ? { lab: o.lab } : {})
          : undefined;
        const input = {
          namespaces: [...(env?.namespaces ?? []), ...files.namespaces],
          endpoints: [
            ...(env?.endpoints ?? []),
            ...files.endpoints.map((e, i) => ({ ...e, id: (env?.endpoints.length ?? 0) + i + 1 })),
          ],
          nodeIPs: [...(env?.nodeIPs ?? []), ...files.nodeIPs],
          policies: [...(env?.policies ?? []), ...files.policies],
        };
        if (input.endpoints.length === 0)
          throw new WeirError(
            'ERR_POLICY_TRACE_NO_PODS',
            'no pods to trace: give Pod manifests with -f or run inside a lab',
          );
        const output = computePolicy(input);
        const result = trace({ input, output }, { from: o.from, to: o.to, port, protocol });
        process.stdout.write(
          o.output === 'json' ? JSON.stringify(result, null, 2) + '\n' : traceText(result),
        );
      },
    );
  return cmd;
}

export function registerPolicyCommands(program: Command, deps: PolicyCommandDeps = {}): void {
  program.addCommand(policyCommand(deps));
}

// `weir delete`: remove objects through the agent's API, as kubectl does — named by manifests
// (`-f FILE…`) or by type and name (`weir delete pod a b -n app`, `weir delete svc/web`); a namespace
// only when no pod is left in it. It answers once the nodes have removed them. `--dry-run=server`
// prints which connections would change verdict; `--dry-run=client` what would be sent.
import { Command, Option } from 'commander';
import { agentClient } from '../../agent/client.js';
import { namespacedKind } from '../../cluster/kinds.js';
import { refName, toDeleteRef, type ChangeResult } from '../../cluster/objects.js';
import { loadManifests, registeredKinds } from '../../k8s/index.js';
import type { VerdictDiff } from '../../policy/verdict-diff.js';
import { WeirError } from '../../shared/errors.js';
import { printChanges } from './apply.js';
import { labOption, outputOption } from './lab.js';
import { printDiff } from './policy-diff.js';
import { printResult, type OutputFormat } from '../output.js';

/** What a delete sends per object: kind, name, namespace (and the file it came from). */
export interface DeleteRef {
  kind: string;
  name: string;
  namespace?: string;
  apiVersion?: string;
  file?: string;
}

/** kubectl's short names of the kinds weir takes; every kind is also its lower-case name and plural. */
const shortNames: Record<string, string[]> = {
  Pod: ['po'],
  Namespace: ['ns'],
  Service: ['svc'],
  NetworkPolicy: ['netpol'],
  CiliumNetworkPolicy: ['cnp', 'ciliumnp'],
  CiliumClusterwideNetworkPolicy: ['ccnp'],
  GatewayClass: ['gc'],
  Gateway: ['gtw'],
  ReferenceGrant: ['refgrant'],
};

const plural = (kind: string) => {
  const k = kind.toLowerCase();
  if (k.endsWith('y')) return `${k.slice(0, -1)}ies`;
  if (k.endsWith('s')) return `${k}es`;
  return `${k}s`;
};

/** The kind a TYPE names ('po', 'pods', 'pod', 'Pod', 'cnp', 'networkpolicies', …), or undefined. */
export function kindOfType(type: string): string | undefined {
  const t = type.toLowerCase();
  for (const { kind } of registeredKinds())
    if (t === kind.toLowerCase() || t === plural(kind) || (shortNames[kind] ?? []).includes(t)) return kind;
  return undefined;
}

/**
 * The objects `weir delete TYPE NAME…` or `weir delete TYPE/NAME…` names. Namespaced kinds take
 * `namespace`; a cluster-scoped kind ignores it (kubectl does the same).
 */
export function refsOfArgs(args: string[], namespace: string): DeleteRef[] {
  const bad = (message: string) =>
    new WeirError('ERR_CLI_ARGUMENT', message, { location: { field: 'resource' } });
  const kinds = () => [...new Set(registeredKinds().map((k) => plural(k.kind)))].sort().join(', ');
  const ref = (type: string, name: string): DeleteRef => {
    const kind = kindOfType(type);
    if (!kind) throw bad(`unknown resource type '${type}' (one of ${kinds()}, or their short names)`);
    if (name === '') throw bad(`'${type}/': the name is missing`);
    return { kind, name, ...(namespacedKind(kind) ? { namespace } : {}) };
  };
  const [first = '', ...rest] = args;
  if (first.includes('/')) {
    // kubectl's TYPE/NAME form: every argument is one.
    return args.map((a) => {
      const [type = '', name = '', ...extra] = a.split('/');
      if (extra.length > 0 || !a.includes('/'))
        throw bad(`'${a}': give every object as TYPE/NAME once one is (or TYPE NAME…)`);
      return ref(type, name);
    });
  }
  if (rest.length === 0) throw bad(`'weir delete ${first}' needs the names of the objects (or -f FILE)`);
  for (const n of rest)
    if (n.includes('/')) throw bad(`'${n}': give a plain name after the type, or every object as TYPE/NAME`);
  return rest.map((n) => ref(first, n));
}

interface DeleteOptions {
  filename?: string[];
  namespace: string;
  ignoreNotFound?: boolean;
  dryRun: 'none' | 'server' | 'client';
  lab: string;
  output: OutputFormat;
}

export function deleteCommand(): Command {
  return new Command('delete')
    .summary('remove objects by manifest (-f) or by type and name (a namespace only when it has no pods)')
    .description(
      'remove objects, kubectl style: the objects of manifest files or directories (-f), or named by ' +
        'type and name (weir delete pod a b -n app, weir delete svc/web cnp/allow). Kinds: Namespace, ' +
        'Pod, Service, EndpointSlice, NetworkPolicy, CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy ' +
        'and the Gateway API kinds (a namespace only when it has no pods)',
    )
    .argument(
      '[resource...]',
      'TYPE NAME… or TYPE/NAME… (pods|po, services|svc, networkpolicies|netpol, cnp, …)',
    )
    .option('-f, --filename <path...>', 'files or directories (.yaml, .yml, .json)')
    .option('-n, --namespace <ns>', 'the namespace of the objects named by type and name', 'default')
    .option('--ignore-not-found', 'objects that do not exist are not an error')
    .addOption(
      new Option(
        '--dry-run <mode>',
        'none (delete), server (the agent validates and prints which connections would change ' +
          'verdict; nothing removed) or client (printed, nothing sent)',
      )
        .choices(['none', 'server', 'client'])
        .default('none'),
    )
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (args: string[], o: DeleteOptions) => {
      if ((o.filename === undefined) === (args.length === 0))
        throw new WeirError(
          'ERR_CLI_ARGUMENT',
          args.length === 0
            ? 'say what to delete: -f FILE, or TYPE NAME… (weir delete pod a -n app)'
            : 'give either -f FILE or TYPE NAME…, not both',
          { location: { field: args.length === 0 ? 'filename' : 'resource' } },
        );
      const refs: DeleteRef[] = o.filename
        ? (await loadManifests(o.filename)).map(toDeleteRef)
        : refsOfArgs(args, o.namespace);
      if (o.dryRun === 'client') {
        if (o.output === 'json' || o.output === 'yaml') printResult(o.output, { objects: refs }, [], []);
        else
          for (const r of refs)
            process.stdout.write(`${refName(r)} would be deleted (dry run: nothing sent)\n`);
        return;
      }
      if (o.dryRun === 'server') {
        const diff = await agentClient(o.lab).call<VerdictDiff>('POST', '/v1/policy/diff', {
          objects: refs,
          mode: 'delete',
          entities: false,
        });
        printDiff(diff, o.output);
        return;
      }
      const answer = await agentClient(o.lab).call<{ results: ChangeResult[] }>('POST', '/v1/delete', {
        objects: refs,
        ignoreNotFound: o.ignoreNotFound === true,
      });
      printChanges(o.output, answer.results);
    });
}

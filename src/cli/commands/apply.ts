// `weir apply -f`: create or update what manifests describe: the lab's Namespaces and Pods, the
// agent's Services, EndpointSlices and policies. Everything is checked before anything changes.
import { Command } from 'commander';
import { loadManifests, manifestRef, namespaceProblems } from '../../k8s/index.js';
import { ValidationError } from '../../shared/errors.js';
import { Lab, type ApplyResult } from '../../lab/index.js';
import type { StoredObject } from '../../agent/store.js';
import type { Manifest } from '../../k8s/index.js';
import { agentClient, agentHooks } from '../../agent/link.js';
import { isAgentKind } from '../kinds.js';
import { labOption, outputOption, progress } from './lab.js';
import { printResult, type OutputFormat } from '../output.js';

export function printChanges(format: OutputFormat, results: ApplyResult[]): void {
  if (format === 'json' || format === 'yaml') printResult(format, results, [], []);
  else for (const r of results) process.stdout.write(`${r.object} ${r.action}\n`);
}

export function applyCommand(): Command {
  return new Command('apply')
    .summary('create or update the objects of manifests (all valid, or nothing applied)')
    .description(
      'create or update the objects of manifest files or directories: Namespace, Pod, Service, EndpointSlice, ' +
        'NetworkPolicy, CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy (all valid, or nothing applied)',
    )
    .requiredOption('-f, --filename <path...>', 'files or directories (.yaml, .yml, .json)')
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (o: { filename: string[]; lab: string; output: OutputFormat }) => {
      // Every object of every file is validated here first: one bad object, nothing applied.
      const manifests = await loadManifests(o.filename);
      const lab = await Lab.open(o.lab);
      const state = await lab.requireState();
      const missing = namespaceProblems(manifests.map(manifestRef), Object.keys(state.namespaces));
      if (missing.length > 0) throw new ValidationError(missing);
      const forLab = manifests.filter((m) => !isAgentKind(m.kind));
      const forAgent = manifests.filter((m) => isAgentKind(m.kind));
      const results: ApplyResult[] = [];
      if (forLab.length > 0) {
        const link = agentHooks(o.lab);
        results.push(...(await lab.apply(forLab, { log: progress, ...link.hooks })));
        await link.sync();
      }
      if (forAgent.length > 0) {
        const answer = await agentClient(o.lab).call<{
          results: { object: string; action: ApplyResult['action'] }[];
        }>('POST', '/v1/apply', { objects: forAgent.map(toStored) });
        results.push(...answer.results.map(agentResult));
      }
      printChanges(o.output, results);
    });
}

export function toStored(m: Manifest): StoredObject {
  return {
    apiVersion: m.apiVersion,
    kind: m.kind,
    name: m.metadata.name,
    ...(m.metadata.namespace ? { namespace: m.metadata.namespace } : {}),
    file: m.file,
    object: m.raw,
  };
}

/** The agent's "Kind/ns/name" as kubectl prints it: "ciliumnetworkpolicy/name". */
export function agentResult(r: { object: string; action: ApplyResult['action'] }): ApplyResult {
  const [kind = '', ...rest] = r.object.split('/');
  const name = rest.at(-1) ?? '';
  const namespace = rest.length > 1 ? rest[0] : undefined;
  return { object: `${kind.toLowerCase()}/${name}`, ...(namespace ? { namespace } : {}), action: r.action };
}

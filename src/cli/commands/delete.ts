// `weir delete -f`: remove what manifests describe: policies and services from the agent, Pods and
// Namespaces from the lab.
import { Command } from 'commander';
import { loadManifests } from '../../k8s/index.js';
import { Lab } from '../../lab/index.js';
import { agentResult, printChanges, toStored } from './apply.js';
import { agentClient, agentHooks } from '../../agent/link.js';
import { isAgentKind } from '../kinds.js';
import type { ApplyResult } from '../../lab/index.js';
import { labOption, outputOption, progress } from './lab.js';
import type { OutputFormat } from '../output.js';

export function deleteCommand(): Command {
  return new Command('delete')
    .summary('remove the objects of manifests (a namespace only when it has no pods)')
    .description(
      'remove the objects of manifest files or directories: Namespace, Pod, Service, EndpointSlice, ' +
        'NetworkPolicy, CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy (a namespace only when it has no pods)',
    )
    .requiredOption('-f, --filename <path...>', 'files or directories (.yaml, .yml, .json)')
    .option('--ignore-not-found', 'objects that do not exist are not an error')
    .addOption(labOption())
    .addOption(outputOption())
    .action(
      async (o: { filename: string[]; ignoreNotFound?: boolean; lab: string; output: OutputFormat }) => {
        const manifests = await loadManifests(o.filename);
        const results: ApplyResult[] = [];
        const forAgent = manifests.filter((m) => isAgentKind(m.kind));
        if (forAgent.length > 0) {
          const answer = await agentClient(o.lab).call<{
            results: { object: string; action: ApplyResult['action'] }[];
          }>('POST', '/v1/delete', { objects: forAgent.map(toStored) });
          results.push(...answer.results.map(agentResult));
        }
        const forLab = manifests.filter((m) => !isAgentKind(m.kind));
        if (forLab.length > 0) {
          const link = agentHooks(o.lab);
          const lab = await Lab.open(o.lab);
          results.push(
            ...(await lab.delete(forLab, {
              log: progress,
              ignoreNotFound: o.ignoreNotFound === true,
              ...link.hooks,
            })),
          );
          await link.sync();
        }
        printChanges(o.output, results);
      },
    );
}

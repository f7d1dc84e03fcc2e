// `weir delete -f`: remove the objects of manifests through the agent's API (a namespace only when
// no pod is left in it); it answers once the nodes have removed them.
import { Command } from 'commander';
import { agentClient } from '../../agent/client.js';
import { toDeleteRef, type ChangeResult } from '../../cluster/objects.js';
import { loadManifests } from '../../k8s/index.js';
import { printChanges } from './apply.js';
import { labOption, outputOption } from './lab.js';
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
        const answer = await agentClient(o.lab).call<{ results: ChangeResult[] }>('POST', '/v1/delete', {
          objects: manifests.map(toDeleteRef),
          ignoreNotFound: o.ignoreNotFound === true,
        });
        printChanges(o.output, answer.results);
      },
    );
}

// `weir apply -f`: send every object of manifest files or directories to the agent's API. The CLI
// validates them first (quick errors, nothing sent); the API validates them again, together, and
// answers once the nodes have put them in force.
import { Command } from 'commander';
import { agentClient } from '../../agent/client.js';
import { toDesired, type ChangeResult } from '../../cluster/objects.js';
import { loadManifests } from '../../k8s/index.js';
import { labOption, outputOption } from './lab.js';
import { printResult, type OutputFormat } from '../output.js';

export function printChanges(format: OutputFormat, results: ChangeResult[]): void {
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
      const manifests = await loadManifests(o.filename);
      const answer = await agentClient(o.lab).call<{ results: ChangeResult[] }>('POST', '/v1/apply', {
        objects: manifests.map(toDesired),
      });
      printChanges(o.output, answer.results);
    });
}

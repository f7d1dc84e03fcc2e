// `weir apply -f`: send every object of manifest files or directories to the agent's API. The CLI
// validates them first (quick errors, nothing sent); the API validates them again, together, and
// answers once the nodes have put them in force.
import { Command, Option } from 'commander';
import { agentClient } from '../../agent/client.js';
import { toDesired, type ChangeResult } from '../../cluster/objects.js';
import { loadManifests } from '../../k8s/index.js';
import { labOption, outputOption } from './lab.js';
import { printResult, type OutputFormat } from '../output.js';
import { fetchDiff, printDiff } from './policy-diff.js';

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
    .addOption(
      new Option(
        '--dry-run <mode>',
        'none (apply), server (the agent validates them and prints which connections would change ' +
          'verdict; nothing applied) or client (validated here, printed, nothing sent)',
      )
        .choices(['none', 'server', 'client'])
        .default('none'),
    )
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (o: { filename: string[]; dryRun: string; lab: string; output: OutputFormat }) => {
      const manifests = await loadManifests(o.filename);
      if (o.dryRun === 'client') {
        // kubectl's client dry run: what would be sent, validated locally, nothing sent.
        if (o.output === 'json' || o.output === 'yaml')
          printResult(o.output, { objects: manifests.map(toDesired) }, [], []);
        else
          for (const m of manifests)
            process.stdout.write(
              `${m.kind.toLowerCase()}/${m.metadata.name}${m.metadata.namespace ? ` (namespace ${m.metadata.namespace})` : ''} valid (dry run: nothing sent)\n`,
            );
        return;
      }
      if (o.dryRun === 'server') {
        printDiff(await fetchDiff(o.lab, manifests, 'apply', false), o.output);
        return;
      }
      const answer = await agentClient(o.lab).call<{ results: ChangeResult[] }>('POST', '/v1/apply', {
        objects: manifests.map(toDesired),
      });
      printChanges(o.output, answer.results);
    });
}

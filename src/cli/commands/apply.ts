// `weir apply -f`: create or update Namespaces and Pods in the lab from manifests.
import { Command } from 'commander';
import { loadManifests } from '../../k8s/index.js';
import { Lab, type ApplyResult } from '../../lab/index.js';
import { labOption, outputOption, progress } from './lab.js';
import { printResult, type OutputFormat } from '../output.js';

export function printChanges(format: OutputFormat, results: ApplyResult[]): void {
  if (format === 'json' || format === 'yaml') printResult(format, results, [], []);
  else for (const r of results) process.stdout.write(`${r.object} ${r.action}\n`);
}

export function applyCommand(): Command {
  return new Command('apply')
    .description(
      'create or update the Namespaces and Pods of manifest files or directories (all valid, or nothing applied)',
    )
    .requiredOption('-f, --filename <path...>', 'files or directories (.yaml, .yml, .json)')
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (o: { filename: string[]; lab: string; output: OutputFormat }) => {
      const manifests = await loadManifests(o.filename);
      printChanges(o.output, await (await Lab.open(o.lab)).apply(manifests, { log: progress }));
    });
}

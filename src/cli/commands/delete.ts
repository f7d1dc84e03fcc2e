// `weir delete -f`: remove the Pods and Namespaces of manifests from the lab.
import { Command } from 'commander';
import { loadManifests } from '../../k8s/index.js';
import { Lab } from '../../lab/index.js';
import { printChanges } from './apply.js';
import { labOption, outputOption, progress } from './lab.js';
import type { OutputFormat } from '../output.js';

export function deleteCommand(): Command {
  return new Command('delete')
    .description(
      'remove the Pods and Namespaces of manifest files or directories (a namespace only when empty)',
    )
    .requiredOption('-f, --filename <path...>', 'files or directories (.yaml, .yml, .json)')
    .option('--ignore-not-found', 'objects that do not exist are not an error')
    .addOption(labOption())
    .addOption(outputOption())
    .action(
      async (o: { filename: string[]; ignoreNotFound?: boolean; lab: string; output: OutputFormat }) => {
        const manifests = await loadManifests(o.filename);
        const lab = await Lab.open(o.lab);
        printChanges(
          o.output,
          await lab.delete(manifests, { log: progress, ignoreNotFound: o.ignoreNotFound === true }),
        );
      },
    );
}

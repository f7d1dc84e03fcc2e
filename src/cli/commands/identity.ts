// `weir identity list|get`: security identities (reserved ones and those the agent allocated),
// like `cilium identity list`.
import { Command } from 'commander';
import { WeirError } from '../../shared/errors.js';
import { printResult, type Column, type OutputFormat } from '../output.js';
import { identityCaCommand, identityCertCommand } from './auth.js';
import { agentIdentities } from './inspect-data.js';
import { labOption, outputOption } from './lab.js';
import type { Identity } from '../../identity/allocator.js';

const columns: Column<Identity>[] = [
  { header: 'id', get: (i) => i.id },
  { header: 'labels', get: (i) => i.labels.join(',') },
];

export function identityCommand(): Command {
  const cmd = new Command('identity').description(
    'security identities: numbers the datapath uses for label sets',
  );
  cmd
    .command('list')
    .alias('ls')
    .description('list reserved identities and every identity the agent has allocated')
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (o: { lab: string; output: OutputFormat }) => {
      const ids = await agentIdentities(o.lab);
      printResult(o.output, ids, ids, columns);
    });
  cmd
    .command('get')
    .description('one identity and its labels')
    .argument('<id>', 'numeric identity')
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (id: string, o: { lab: string; output: OutputFormat }) => {
      if (!/^\d+$/.test(id))
        throw new WeirError('ERR_CLI_ARGUMENT', `identity '${id}' is not a number`, {
          location: { field: 'id' },
        });
      const found = (await agentIdentities(o.lab)).find((i) => i.id === Number(id));
      if (!found)
        throw new WeirError('ERR_CLI_NOT_FOUND', `identity ${id} is not allocated in lab ${o.lab}`, {
          location: { object: `identity ${id}`, field: 'id' },
        });
      printResult(o.output, found, [found], columns);
    });
  cmd.addCommand(identityCertCommand());
  cmd.addCommand(identityCaCommand());
  return cmd;
}

// `weir agent`: runs a node's agent in the foreground (`weir lab up` starts it in the background).
import { Command, Option } from 'commander';
import { runAgent } from '../../agent/main.js';
import { defaultLabName } from '../../lab/lab.js';
import { WeirError } from '../../shared/errors.js';

function intOption(name: string, min: number, max: number) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new WeirError('ERR_CLI_OPTION', `${name} must be an integer within ${min}..${max}, not '${v}'`);
    return n;
  };
}

export function agentCommand(): Command {
  return new Command('agent')
    .description("run a lab node's agent in the foreground (weir lab up starts it for you)")
    .addOption(new Option('--lab <name>', 'lab name').default(defaultLabName()))
    .addOption(
      new Option('--policy-map-max <n>', 'entries of each endpoint policy map (256..65536)')
        .default(16384)
        .argParser(intOption('--policy-map-max', 256, 65536)),
    )
    .addOption(
      new Option('--ct-gc-interval <seconds>', 'how often expired conntrack entries are removed')
        .default(30)
        .argParser(intOption('--ct-gc-interval', 1, 86400)),
    )
    .action(async (o: { lab: string; policyMapMax: number; ctGcInterval: number }) => {
      await runAgent({ lab: o.lab, policyMapMax: o.policyMapMax, ctGcIntervalMs: o.ctGcInterval * 1000 });
    });
}

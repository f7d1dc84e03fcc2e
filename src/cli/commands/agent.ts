// `weir agent`: runs a node's agent in the foreground (`weir lab up` starts it in the background).
import { Command, Option } from 'commander';
import { defaultLabName } from '../../lab/lab.js';
import { agentClient } from '../../agent/client.js';
import { SETTINGS, type AgentSettingValues, type Setting } from '../../agent/settings.js';
import { parseOutput, printResult, type OutputFormat } from '../output.js';

/**
 * The flag of an agent setting (src/agent/settings.ts). Without it a persisted setting stays as the
 * previous run stored it, any other takes its default.
 */
export function settingOption(s: Setting): Option {
  const dflt = s.persisted ? `default: as before, else ${s.defaultText}` : `default ${s.defaultText}`;
  const choices = s.choices && !s.arg.includes('|') ? `; one of ${s.choices.join(', ')}` : '';
  return new Option(`${s.flag} ${s.arg}`, `${s.description} (${dflt}${choices})`).argParser((v: string) =>
    s.parse(v),
  );
}

/** Adds every agent setting's flag to `cmd`. */
export function addSettingOptions(cmd: Command): Command {
  for (const s of SETTINGS as readonly Setting[]) cmd.addOption(settingOption(s));
  return cmd;
}

/** The settings given on the command line (commander's parsed options), by setting key. */
export function givenSettings(o: Record<string, unknown>): Partial<AgentSettingValues> {
  const out: Record<string, unknown> = {};
  for (const s of SETTINGS as readonly Setting[]) {
    const v = o[settingOption(s).attributeName()];
    if (v !== undefined) out[s.key] = v;
  }
  return out as Partial<AgentSettingValues>;
}

export function agentCommand(): Command {
  const agent = new Command('agent').description("the per-node agent that owns the node's datapath");
  agent
    .command('status')
    .description("the agent's endpoints, identities, policies and regenerations")
    .addOption(new Option('--lab <name>', 'lab name (env WEIR_LAB)').default(defaultLabName()))
    .addOption(
      new Option('-o, --output <format>', 'table, json or yaml').default('table').argParser(parseOutput),
    )
    .action(async (o: { lab: string; output: OutputFormat }) => {
      const s = await agentClient(o.lab).call<AgentStatus>('GET', '/v1/status');
      const rows = [
        { k: 'lab', v: s.lab },
        { k: 'node', v: s.node },
        { k: 'pid', v: String(s.pid) },
        { k: 'endpoints', v: String(s.endpoints) },
        { k: 'identities', v: String(s.identities) },
        { k: 'policies', v: String(s.policies) },
        { k: 'policy map size', v: String(s.policyMapMax) },
        {
          k: 'service frontends',
          v: `${s.services} (backend selection: ${s.lbAlgorithm}; translated ${s.socketLB ? 'at the socket, else at tc' : 'at tc only: socket LB off'})`,
        },
        {
          k: 'regenerations',
          v: `${s.regenerations.count} (last ${s.regenerations.lastMs.toFixed(1)} ms, ${s.regenerations.lastUpserts} written, ${s.regenerations.lastDeletes} removed)`,
        },
        {
          k: 'reconcile passes',
          v: `${s.reconcile.passes}${s.reconcile.error ? ` (last failed: ${s.reconcile.error})` : ''}`,
        },
      ];
      printResult(o.output, s, rows, [
        { header: 'field', get: (r) => r.k },
        { header: 'value', get: (r) => r.v },
      ]);
    });
  agent
    .command('metrics')
    .description("the agent's Prometheus metrics (text exposition format)")
    .addOption(new Option('--lab <name>', 'lab name (env WEIR_LAB)').default(defaultLabName()))
    .action(async (o: { lab: string }) => {
      process.stdout.write(await agentClient(o.lab).text('/metrics'));
    });
  addSettingOptions(
    agent
      .command('run')
      .description("run a lab node's agent in the foreground (weir lab up starts it for you)")
      .addOption(new Option('--lab <name>', 'lab name').default(defaultLabName()))
      .option('--node <name>', "the lab's node to run (default: its first)"),
  ).action(async (o: { lab: string; node?: string } & Record<string, unknown>) => {
    // Loaded here: no other command pays for the agent's modules.
    const { runAgent } = await import('../../agent/main.js');
    await runAgent({ lab: o.lab, ...(o.node ? { node: o.node } : {}), ...givenSettings(o) });
  });
  return agent;
}

interface AgentStatus {
  lab: string;
  node: string;
  reconcile: { passes: number; error?: string };
  pid: number;
  endpoints: number;
  identities: number;
  policies: number;
  policyMapMax: number;
  services: number;
  lbAlgorithm: string;
  socketLB: boolean;
  regenerations: { count: number; lastMs: number; lastUpserts: number; lastDeletes: number };
}

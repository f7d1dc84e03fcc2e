// `weir agent`: runs a node's agent in the foreground (`weir lab up` starts it in the background).
import { Command, Option } from 'commander';
import { runAgent } from '../../agent/main.js';
import { defaultLabName } from '../../lab/lab.js';
import { WeirError } from '../../shared/errors.js';
import { agentClient } from '../../agent/client.js';
import { checkMaglevSize, maglevSizes } from '../../service/maglev.js';
import { parseOutput, printResult, type OutputFormat } from '../output.js';

function intOption(name: string, min: number, max: number) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new WeirError('ERR_CLI_OPTION', `${name} must be an integer within ${min}..${max}, not '${v}'`);
    return n;
  };
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
  agent
    .command('run')
    .description("run a lab node's agent in the foreground (weir lab up starts it for you)")
    .addOption(new Option('--lab <name>', 'lab name').default(defaultLabName()))
    .addOption(
      new Option(
        '--policy-map-max <n>',
        'entries of each endpoint policy map, 256..65536 (default: as before, else 16384)',
      ).argParser(intOption('--policy-map-max', 256, 65536)),
    )
    .addOption(
      new Option('--ct-gc-interval <seconds>', 'how often expired conntrack entries are removed')
        .default(30)
        .argParser(intOption('--ct-gc-interval', 1, 86400)),
    )
    .option(
      '--identity-labels <spec>',
      "labels that make up identities, Cilium's syntax: 'k8s:app k8s:!job-name' (default: as before, else Cilium's filter)",
    )
    .addOption(
      new Option('--flows <n>', 'flows kept for weir observe (default 4095)').argParser(
        intOption('--flows', 1, 65535),
      ),
    )
    .addOption(
      new Option(
        '--flow-queue <n>',
        'lines a following observer may have waiting before new ones are shed',
      ).argParser(intOption('--flow-queue', 1, 1 << 20)),
    )
    .addOption(
      new Option(
        '--events-buffer <bytes>',
        'bytes of the weir_events ring buffer (a power of 2, default 4 MiB)',
      ).argParser(intOption('--events-buffer', 4096, 1 << 30)),
    )
    .addOption(
      new Option(
        '--flow-events <on|off>',
        'observability: whether the datapath writes flow events (default: as before, else on)',
      ).choices(['on', 'off']),
    )
    .addOption(
      new Option(
        '--lb-algorithm <name>',
        'how a service picks a backend for a new connection (default: as before, else random)',
      ).choices(['random', 'maglev']),
    )
    .addOption(
      new Option(
        '--lb-maglev-table-size <M>',
        `entries of each Maglev table, one of ${maglevSizes.join(', ')} (default: as before, else 16381)`,
      ).argParser((v: string) => checkMaglevSize(Number(v))),
    )
    .option(
      '--lb-maglev-seed <base64>',
      "cluster-wide Maglev hash seed, 12 bytes in base64 (default: as before, else Cilium's)",
    )
    .addOption(
      new Option(
        '--lb-mode <mode>',
        'NodePort from outside: the backend sees the node (snat) or the client (dsr) (default: as before, else snat)',
      ).choices(['snat', 'dsr']),
    )
    .addOption(
      new Option(
        '--socket-lb <on|off>',
        "east-west services at the socket (on) or per packet at the pods' tc programs only (off) (default: as before, else on)",
      ).choices(['on', 'off']),
    )
    .option('--service-cidr <cidr>', 'where ClusterIPs are allocated (default: as before, else 10.96.0.0/16)')
    .option(
      '--service-cidr-v6 <cidr|none>',
      'where IPv6 ClusterIPs are allocated, none for an IPv4-only cluster (default: as before, else fd00:10:96::/112)',
    )
    .action(
      async (o: {
        lab: string;
        lbAlgorithm?: 'random' | 'maglev';
        lbMode?: 'snat' | 'dsr';
        lbMaglevTableSize?: number;
        lbMaglevSeed?: string;
        serviceCidr?: string;
        serviceCidrV6?: string;
        policyMapMax?: number;
        identityLabels?: string;
        ctGcInterval: number;
        flows?: number;
        flowQueue?: number;
        eventsBuffer?: number;
        flowEvents?: 'on' | 'off';
        socketLb?: 'on' | 'off';
      }) => {
        await runAgent({
          lab: o.lab,
          ...(o.policyMapMax ? { policyMapMax: o.policyMapMax } : {}),
          ...(o.identityLabels !== undefined ? { identityLabels: o.identityLabels } : {}),
          ctGcIntervalMs: o.ctGcInterval * 1000,
          ...(o.flows ? { flows: o.flows } : {}),
          ...(o.flowQueue ? { flowQueue: o.flowQueue } : {}),
          ...(o.eventsBuffer ? { eventsBufferBytes: o.eventsBuffer } : {}),
          ...(o.flowEvents ? { flowEvents: o.flowEvents === 'on' } : {}),
          ...(o.lbAlgorithm ? { lbAlgorithm: o.lbAlgorithm } : {}),
          ...(o.lbMaglevTableSize ? { maglevTableSize: o.lbMaglevTableSize } : {}),
          ...(o.lbMaglevSeed ? { maglevSeed: o.lbMaglevSeed } : {}),
          ...(o.serviceCidr ? { serviceCIDR: o.serviceCidr } : {}),
          ...(o.serviceCidrV6 ? { serviceCIDRv6: o.serviceCidrV6 === 'none' ? '' : o.serviceCidrV6 } : {}),
          ...(o.lbMode ? { lbMode: o.lbMode } : {}),
          ...(o.socketLb ? { socketLB: o.socketLb === 'on' } : {}),
        });
      },
    );
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

// `weir conformance run`: runs NetworkPolicy/CNP conformance cases through one runner, in
// simulate mode (policy engine + datapath lookup twin) or datapath mode (the lab, real packets).
import { Command, Option } from 'commander';
import { closeDatapathSessions, datapathProberFactory } from '../../conformance/datapath.js';
import { DATAPATH_DEFAULTS, HOST_ROUTING_MODES, type HostRouting } from '../../datapath/loader.js';
import { runCases, type CaseReport, type ProberFactory, type RunReport } from '../../conformance/runner.js';
import { simulateProberFactory } from '../../conformance/simulate.js';
import { WeirError } from '../../shared/errors.js';
import { progress } from './lab.js';
import { runGatewayCommand } from './conformance-gateway.js';
import { join } from 'node:path';
import { conformanceDir } from '../../shared/paths.js';

/** The corpora under conformance/ that `--suite` names. */
export const conformanceSuites = ['netpol', 'cnp', 'l7', 'gateway-api'];

let registeredDatapathProber: ProberFactory | undefined;

/** Replaces the prober of datapath mode (by default: a lab with its agent per topology). */
export function registerDatapathProber(factory: ProberFactory): void {
  registeredDatapathProber = factory;
}

function factoryFor(
  mode: string,
  timeoutMs: number,
  socketLB: boolean,
  hostRouting: HostRouting,
  nodes = 1,
): ProberFactory {
  if (mode === 'simulate') return simulateProberFactory();
  if (mode === 'datapath')
    return (
      registeredDatapathProber ??
      datapathProberFactory({ timeoutMs, socketLB, hostRouting, nodes, log: progress })
    );
  throw new WeirError('ERR_CLI_ARGUMENT', `unknown mode '${mode}' (simulate or datapath)`, {
    location: { field: '--mode' },
  });
}

/** The JSON report: {"cases":[{"id","file","mode","pass","results":[...]}]} plus details. */
export function reportJson(r: RunReport): unknown {
  return {
    cases: r.cases.map((c) => ({
      id: c.id,
      file: c.file,
      name: c.name,
      mode: c.mode,
      pass: c.pass,
      counts: c.counts,
      ...(c.error ? { error: c.error } : {}),
      ...(c.errorCode ? { errorCode: c.errorCode } : {}),
      results: c.results,
      mismatches: c.mismatches,
      loopbackMismatches: c.loopbackMismatches,
    })),
  };
}

function caseLine(c: CaseReport): string {
  const viaService = c.results.filter((r) => r.viaService).length;
  const allSkipped = c.counts.probes > 0 && c.counts.skipped === c.counts.probes;
  const verdict = c.pass === null ? (allSkipped ? 'SKIP ' : 'NOEXP') : c.pass ? 'PASS ' : 'FAIL ';
  const extra = [
    c.counts.skipped ? `${c.counts.skipped} skipped` : '',
    c.loopbackMismatches.length ? `${c.loopbackMismatches.length} loopback mismatches (not failing)` : '',
    viaService ? `${viaService} through a Service` : '',
  ].filter(Boolean);
  const counts =
    c.pass === null ? `${c.counts.probes} probes` : `${c.counts.matched}/${c.counts.compared} matched`;
  return `${verdict} ${c.id} ${c.name} (${counts}${extra.length ? ', ' + extra.join(', ') : ''})`;
}

export function reportText(r: RunReport): string {
  const lines: string[] = [];
  const mark = (b: boolean | null) => (b === null ? 'skipped' : b ? 'allowed' : 'denied');
  for (const c of r.cases) {
    lines.push(caseLine(c));
    if (c.error) lines.push(`    error: ${c.error}`);
    for (const m of c.mismatches) {
      if (m.result !== undefined) {
        // L7: the probe's id and request, the results compared.
        const http = m.probe?.http as { method?: string; path?: string } | undefined;
        const what = http ? ` ${http.method ?? ''} ${http.path ?? ''}` : '';
        lines.push(
          `    ${String(m.probe?.id ?? '')} ${m.from} -> ${m.to} ${m.protocol}/${m.port}${what}: expected ${m.expectedResult ?? '?'}, observed ${m.result}${m.note ? ` (${m.note})` : ''}`,
        );
        continue;
      }
      lines.push(
        `    ${m.from} -> ${m.to} ${m.protocol}/${m.port}: expected ${mark(m.expected ?? null)}, observed ${mark(m.allowed)}`,
      );
    }
  }
  const failed = r.cases.filter((c) => c.pass === false).length;
  lines.push(
    `${r.cases.length} cases, ${r.cases.filter((c) => c.pass === true).length} passed, ${failed} failed`,
  );
  return lines.join('\n') + '\n';
}

export function conformanceCommand(): Command {
  const cmd = new Command('conformance').description('NetworkPolicy / CiliumNetworkPolicy conformance cases');
  cmd
    .command('run')
    .description('run the case files of a directory and compare with their expectations')
    .option('--cases <dir>', 'directory of case files (or a single case file)')
    .addOption(
      new Option(
        '--suite <name>',
        "one of the repository's corpora (conformance/<name>) instead of --cases",
      ).choices(conformanceSuites),
    )
    .addOption(
      new Option('--mode <mode>', 'datapath (lab, real connections) or simulate (policy engine)')
        .choices(['datapath', 'simulate'])
        .default('datapath'),
    )
    .addOption(
      new Option('--probe-timeout <ms>', 'datapath: a connection not made within this is blocked')
        .default(1000)
        .argParser((v) => {
          const n = Number(v);
          if (!Number.isInteger(n) || n < 50 || n > 30_000)
            throw new WeirError(
              'ERR_CLI_OPTION',
              `--probe-timeout must be an integer within 50..30000, not '${v}'`,
            );
          return n;
        }),
    )
    .addOption(
      new Option(
        '--socket-lb <on|off>',
        "datapath: Services translated at the socket (on) or by the pods' tc programs only (off)",
      )
        .choices(['on', 'off'])
        .default('on'),
    )
    .addOption(
      new Option(
        '--host-routing <mode>',
        "datapath: the agent's --host-routing, bpf (pod traffic skips the node's IP stack) or legacy",
      )
        .choices(HOST_ROUTING_MODES)
        .default(DATAPATH_DEFAULTS.hostRouting),
    )
    .addOption(
      new Option('-o, --output <format>', 'text or json').choices(['text', 'json', 'table']).default('text'),
    )
    .addOption(
      new Option(
        '--nodes <n>',
        "datapath: nodes per case's lab; the topology's pods go round-robin in file order (pod i on node (i mod n)+1)",
      )
        .default(1)
        .argParser((v) => {
          const n = Number(v);
          if (!Number.isInteger(n) || n < 1 || n > 8)
            throw new WeirError('ERR_CLI_OPTION', `--nodes must be an integer within 1..8, not '${v}'`);
          return n;
        }),
    )
    .option('--only <ids...>', 'gateway-api: only these case ids')
    .action(
      async (o: {
        only?: string[];
        cases?: string;
        suite?: string;
        mode: string;
        output: string;
        probeTimeout: number;
        socketLb: string;
        hostRouting: HostRouting;
        nodes: number;
      }) => {
        // The Gateway API corpus has its own runner (a topology and an echo contract); --cases may
        // point at a copy of it.
        if (o.suite === 'gateway-api')
          return runGatewayCommand({ ...o, cases: o.cases ?? join(conformanceDir, 'gateway-api') });
        // The labs of datapath mode are removed on the way out, also when interrupted.
        const onSignal = (signal: NodeJS.Signals) => {
          progress(`${signal}: removing the conformance labs`);
          void closeDatapathSessions().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
        };
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        if ((o.cases === undefined) === (o.suite === undefined))
          throw new WeirError('ERR_CLI_ARGUMENT', 'give one of --cases <dir> or --suite <name>', {
            location: { field: '--cases' },
          });
        const casesDir = o.cases ?? join(conformanceDir, o.suite as string, 'cases');
        let report: RunReport;
        try {
          report = await runCases({
            casesDir,
            mode: o.mode,
            proberFactory: factoryFor(o.mode, o.probeTimeout, o.socketLb === 'on', o.hostRouting, o.nodes),
          });
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          await closeDatapathSessions();
        }
        process.stdout.write(
          o.output === 'json' ? JSON.stringify(reportJson(report), null, 2) + '\n' : reportText(report),
        );
        if (report.cases.some((c) => c.pass === false)) process.exitCode = 1;
      },
    );
  return cmd;
}

export function registerConformanceCommands(program: Command): void {
  program.addCommand(conformanceCommand());
}

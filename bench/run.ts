// `make bench`: the datapath's cost, measured between two pods of a throw-away lab (weirbench).
// Each scenario changes the lab (baseline: nothing; later: weir enforcing N policies, iptables
// with N rules, ...) and every measurement runs under every scenario in the same run, so rows
// compare like with like. Results: bench/results/<timestamp>.json, latest.json and latest.md.
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release } from 'node:os';
import { join } from 'node:path';
import { parseManifests } from '../src/k8s/index.js';
import { Lab, parseLabSpec } from '../src/lab/index.js';
import { repoRoot } from '../src/shared/paths.js';
import { reportedMetrics, measurements, startServers, type BenchContext } from './measurements.js';

export interface Scenario {
  name: string;
  description: string;
  setup(lab: Lab): Promise<void>;
  teardown(lab: Lab): Promise<void>;
}

/** The first scenario is the baseline the others are compared with. */
export const scenarios: Scenario[] = [
  {
    name: 'baseline',
    description: 'veth + routing in the lab, no weir program attached',
    setup: async () => undefined,
    teardown: async () => undefined,
  },
];

const labName = 'weirbench';
const seconds = Number(process.env.WEIR_BENCH_SECONDS ?? 5);
const runs = Number(process.env.WEIR_BENCH_RUNS ?? 3);
const resultsDir = join(repoRoot, 'bench', 'results');

const podsYaml = ['server', 'client']
  .map(
    (name) => `apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: bench, labels: {app: ${name}}}
spec: {containers: [{name: bench, ports: [{containerPort: 8080}]}]}`,
  )
  .join('\n---\n');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

interface Row {
  scenario: string;
  metric: string;
  value: number;
  unit: string;
  runs: number[];
  vsBaseline?: number;
}

function table(rows: Row[]): string {
  const lines = ['| scenario | metric | value | unit | vs baseline |', '| --- | --- | ---: | --- | ---: |'];
  for (const r of rows)
    lines.push(
      `| ${r.scenario} | ${r.metric} | ${r.value} | ${r.unit} | ${r.vsBaseline === undefined ? '—' : `${(r.vsBaseline * 100).toFixed(1)} %`} |`,
    );
  return lines.join('\n') + '\n';
}

async function main(): Promise<void> {
  const log = (l: string) => process.stderr.write(`bench: ${l}\n`);
  const lab = await Lab.open(labName);
  const rows: Row[] = [];
  const started = new Date();
  // Other work on the machine skews results; the load at the start says how much to trust them.
  const loadAvgAtStart = loadavg().map((l) => Math.round(l * 100) / 100);
  // Ctrl-C still removes the lab (the finally below does not run on a signal).
  process.once('SIGINT', () => void lab.down().finally(() => process.exit(130)));
  await lab.down();
  try {
    await lab.up(parseLabSpec({ name: labName }), { log });
    await lab.apply(
      [
        ...parseManifests('apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n', '<bench>'),
        ...parseManifests(podsYaml, '<bench>'),
      ],
      { log },
    );
    const ctx: BenchContext = { lab, serverIP: (await lab.pod('bench/server')).ip, seconds };
    const servers = await startServers(lab);
    try {
      for (const sc of scenarios) {
        log(`scenario ${sc.name}: ${sc.description}`);
        await sc.setup(lab);
        try {
          const values: Record<string, number[]> = {};
          for (const m of measurements)
            for (let i = 0; i < runs; i++) {
              log(`  ${m.name}, run ${i + 1}/${runs}`);
              for (const [k, v] of Object.entries(await m.run(ctx))) (values[k] ??= []).push(v);
            }
          for (const { key, label, measurement } of reportedMetrics) {
            const vs = values[key] ?? [];
            const base = rows.find((r) => r.scenario === scenarios[0]?.name && r.metric === label);
            const value = Math.round(median(vs) * 100) / 100;
            rows.push({
              scenario: sc.name,
              metric: label,
              value,
              unit: measurement.unit,
              runs: vs,
              ...(base && sc !== scenarios[0] ? { vsBaseline: value / base.value } : {}),
            });
          }
        } finally {
          await sc.teardown(lab);
        }
      }
    } finally {
      for (const s of servers) s.kill('SIGKILL');
    }
  } finally {
    await lab.down({ log });
  }

  const result = {
    startedAt: started.toISOString(),
    host: { kernel: release(), cpus: cpus().length, cpu: cpus()[0]?.model, loadavgAtStart: loadAvgAtStart },
    config: { secondsPerRun: seconds, runs, statistic: 'median', latency: 'sockperf UDP ping-pong' },
    scenarios: scenarios.map((s) => ({ name: s.name, description: s.description })),
    rows,
  };
  const md =
    `# weir benchmark, ${result.startedAt}\n\nkernel ${result.host.kernel}, ${result.host.cpus} CPUs; ` +
    `median of ${runs} runs of ${seconds} s; pod to pod on one lab node; load average at start ${loadAvgAtStart.join(' ')}.\n\n${table(rows)}`;
  await mkdir(resultsDir, { recursive: true });
  const stamp = result.startedAt.replace(/[:.]/g, '-');
  const json = JSON.stringify(result, null, 2) + '\n';
  await writeFile(join(resultsDir, `${stamp}.json`), json);
  await writeFile(join(resultsDir, 'latest.json'), json);
  await writeFile(join(resultsDir, 'latest.md'), md);
  process.stdout.write(table(rows));
}

await main();

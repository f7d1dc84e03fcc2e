// `weir conformance run --suite gateway-api`: the Gateway API corpus, offline (--mode simulate:
// compiler and router) or in a lab with real requests (--mode datapath). JSON:
// {"cases":[{"id","name","pass","probes":[{"id","pass","detail"}]}]}.
import { runGatewaySuite, type GatewayCaseReport } from '../../conformance/gateway-api.js';
import { progress } from './lab.js';

export async function runGatewayCommand(o: {
  cases: string;
  mode: string;
  output: string;
  only?: string[];
}): Promise<void> {
  const report = await runGatewaySuite({
    dir: o.cases,
    mode: o.mode === 'simulate' ? 'simulate' : 'datapath',
    ...(o.only ? { only: o.only } : {}),
    log: progress,
  });
  if (o.output === 'json') process.stdout.write(JSON.stringify({ cases: report }, null, 2) + '\n');
  else process.stdout.write(reportText(report));
  if (report.some((c) => !c.pass)) process.exitCode = 1;
}

function reportText(cases: GatewayCaseReport[]): string {
  const lines: string[] = [];
  for (const c of cases) {
    const ok = c.probes.filter((p) => p.pass).length;
    lines.push(`${c.pass ? 'PASS' : 'FAIL'} ${c.id} ${c.name} (${ok}/${c.probes.length} probes)`);
    for (const s of c.status ?? []) if (!s.pass) lines.push(`    status: ${s.detail}`);
    for (const p of c.probes) if (!p.pass) lines.push(`    ${p.id}: ${p.detail}`);
  }
  const passed = cases.filter((c) => c.pass).length;
  lines.push(`${cases.length} cases, ${passed} passed, ${cases.length - passed} failed`);
  return lines.join('\n') + '\n';
}

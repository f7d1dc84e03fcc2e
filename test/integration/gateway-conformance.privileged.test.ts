// The Gateway API corpus (conformance/gateway-api) in a lab with real requests, through the real
// CLI: `weir conformance run --suite gateway-api -o json`. Every case must pass — north-south
// cases by requests from a lab external to the Gateways' addresses, mesh cases from inside the
// client pods, status-only cases by their route status — and the run must leave no lab behind.
// The report of which cases pass is printed.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { conformanceDir } from '../../src/shared/paths.js';
import { weir } from '../support/cli.js';

interface Report {
  cases: {
    id: string;
    name: string;
    pass: boolean;
    probes: { id: string; pass: boolean; detail: string }[];
  }[];
}

describe('Gateway API conformance corpus in a lab', () => {
  it('every case passes with real traffic', async () => {
    const dir = join(conformanceDir, 'gateway-api');
    const out = await new Promise<string>((resolve, reject) =>
      execFile(
        weir,
        ['conformance', 'run', '--suite', 'gateway-api', '--cases', dir, '-o', 'json'],
        { timeout: 40 * 60_000, maxBuffer: 64 << 20 },
        (err, stdout, stderr) => {
          // A failing case exits 1 with the report on stdout.
          if (stdout.trim().startsWith('{')) resolve(stdout);
          else reject(new Error(`conformance run failed: ${err?.message ?? ''}\n${stderr}`));
        },
      ),
    );
    const report = JSON.parse(out) as Report;
    const cases = readdirSync(join(dir, 'cases')).filter((f) => f.endsWith('.json'));
    assert.equal(report.cases.length, cases.length, 'every case file was run');
    for (const c of report.cases)
      console.log(
        `# ${c.pass ? 'PASS' : 'FAIL'} ${c.id} ${c.name} (${c.probes.filter((p) => p.pass).length}/${c.probes.length})`,
      );
    const failed = report.cases
      .filter((c) => !c.pass)
      .map(
        (c) =>
          `${c.id} ${c.name}: ${c.probes
            .filter((p) => !p.pass)
            .map((p) => `${p.id} ${p.detail}`)
            .join('; ')}`,
      );
    assert.deepEqual(failed, []);
    const labs = await new Promise<string>((resolve) =>
      execFile('ip', ['netns', 'list'], (_e, so) => resolve(so)),
    );
    assert.equal(
      labs.split('\n').filter((l) => l.startsWith('weir-gwconf-')).length,
      0,
      'no conformance lab is left',
    );
  });
});

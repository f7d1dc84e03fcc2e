// The corpus replayed offline: every case of conformance/gateway-api compiled, its route statuses
// judged, and every probe that needs no backend behaviour over time decided by the router and
// judged as the upstream suite compares (status, backend, what the backend sees, Location,
// response headers, weight shares). Probes that need real traffic are counted, not judged here
// (the privileged runner sends them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { conformanceDir } from '../shared/paths.js';
import { compileCase, judgeStatus, loadCases, loadTopology, replayProbe } from './corpus.js';

const dir = join(conformanceDir, 'gateway-api');
const topo = loadTopology(dir);
const cases = loadCases(dir);

test('the corpus has cases', () => {
  assert.ok(cases.length >= 50, `${cases.length} cases`);
});

let judged = 0;
let traffic = 0;
for (const c of cases) {
  test(`${c.id} ${c.name}`, () => {
    const compiled = compileCase(topo, c);
    const problems: string[] = [];
    for (const s of judgeStatus(c, compiled)) if (!s.pass) problems.push(`status: ${s.detail}`);
    for (const p of c.probes) {
      const r = replayProbe(topo, c, compiled, p);
      if (r.mode === 'traffic') traffic++;
      else judged++;
      if (!r.pass) problems.push(`${p.id} ${p.name ?? ''}: ${r.detail}`);
    }
    assert.deepEqual(problems, []);
  });
}

test('most probes are judged offline', () => {
  assert.ok(judged > 200, `${judged} judged, ${traffic} need traffic`);
  console.log(`# ${judged} probes judged offline, ${traffic} need real traffic`);
});

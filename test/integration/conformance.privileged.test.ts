// Every shared conformance case in datapath mode, through the real CLI: each topology becomes a lab
// with its agent, every probe is a real connection between lab workloads, and every non-loopback
// observation must equal the case's expectation (SCTP is declared but not probed: null). Probes
// with `target: service-clusterip` dial the ClusterIP the agent allocated for the Service (each
// pod's own `s-<ns>-<pod>`, or the case's additions); a pod reaching itself through its own Service
// (loopback) is reported, not judged. The run must also leave no lab behind, after a normal end and
// after SIGINT.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Lab } from '../../src/lab/index.js';
import { stopAgent } from '../../src/agent/spawn.js';
import { runDir, conformanceDir } from '../../src/shared/paths.js';
import { weir } from '../support/cli.js';

const suites = ['netpol', 'cnp'] as const;
const children = new Set<ChildProcess>();

interface Result {
  from: string;
  to: string;
  port: number;
  protocol: string;
  allowed: boolean | null;
  expected?: boolean | null;
  loopback?: boolean;
  viaService?: string;
  backendPort?: number;
  note?: string;
}
interface Report {
  cases: {
    id: string;
    file: string;
    mode: string;
    pass: boolean | null;
    error?: string;
    results: Result[];
    loopbackMismatches: Result[];
  }[];
}

/** Per case file: the probe targets it declares ("TCP/80" -> target). */
function probeTargets(file: string): Map<string, string> {
  const c = JSON.parse(readFileSync(file, 'utf8')) as {
    probes: { port: number; protocol: string; target?: string }[];
  };
  return new Map(c.probes.map((p) => [`${p.protocol}/${p.port}`, p.target ?? 'ip']));
}

function run(args: string[], timeoutMs: number, onStderr?: (text: string, child: ChildProcess) => void) {
  return new Promise<{
    code: number | null;
    signal: string | null;
    stdout: string;
    stderr: string;
    pid: number;
  }>((resolve) => {
    const child = spawn(weir, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
      onStderr?.(stderr, child);
    });
    const timer = setTimeout(() => child.kill('SIGINT'), timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, signal, stdout, stderr, pid: child.pid ?? 0 });
    });
  });
}

/** Labs (state dirs) and netns a run with this pid left behind. */
function leftovers(pid: number): string[] {
  const prefix = `conf-${pid}-`;
  const labs = (() => {
    try {
      return readdirSync(join(runDir, 'labs')).filter((l) => l.startsWith(prefix));
    } catch {
      return [];
    }
  })();
  const netns = (() => {
    try {
      return readdirSync('/var/run/netns').filter((n) => n.startsWith(`weir-${prefix}`));
    } catch {
      return [];
    }
  })();
  return [...labs, ...netns];
}

const pids: number[] = [];
after(async () => {
  for (const c of children) c.kill('SIGKILL');
  // Only if a run did not clean up after itself (the tests below fail on that too).
  for (const pid of pids)
    for (const name of leftovers(pid).filter((n) => !n.startsWith('weir-'))) {
      await stopAgent(name).catch(() => undefined);
      await (await Lab.open(name)).down();
    }
});

type RunResult = Awaited<ReturnType<typeof run>>;

/**
 * Judges one suite's run from its JSON report: every case passes, probes really went through.
 * Returns the loopback mismatches (reported, not judged) of probes through a Service.
 */
function checkSuite(
  t: { diagnostic(message: string): void },
  { suite, dir, r, seconds }: { suite: (typeof suites)[number]; dir: string; r: RunResult; seconds: number },
): string[] {
  t.diagnostic(`${suite}: ${seconds.toFixed(1)} s wall time`);
  assert.equal(r.signal, null, `${suite}: killed (${r.signal}): ${r.stderr}`);
  const report = JSON.parse(r.stdout) as Report;
  const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  assert.equal(report.cases.length, files.length, `${suite}: one report per case file`);

  let compared = 0;
  let viaClusterIP = 0;
  const loopback: string[] = [];
  const loopbackViaService: string[] = [];
  const seen = { allowed: 0, denied: 0, skipped: 0 };
  const problems: string[] = [];
  for (const c of report.cases) {
    assert.equal(typeof c.id, 'string');
    assert.ok(files.includes(c.file.split('/').at(-1) ?? ''), `${c.id}: file ${c.file}`);
    assert.equal(c.mode, 'datapath');
    assert.ok(Array.isArray(c.results) && c.results.length > 0, `${c.id}: no results`);
    if (c.error) problems.push(`${c.id}: ${c.error}`);
    if (c.pass !== true) problems.push(`${c.id}: pass=${String(c.pass)}`);
    for (const m of c.loopbackMismatches) {
      loopback.push(`${c.id} ${m.from} ${m.protocol}/${m.port} ${String(m.allowed)}`);
      if (m.viaService) loopbackViaService.push(loopback.at(-1) as string);
    }
    const targets = probeTargets(c.file);
    for (const res of c.results) {
      assert.equal(typeof res.from, 'string');
      assert.equal(typeof res.to, 'string');
      assert.ok(Number.isInteger(res.port) && res.port > 0);
      assert.ok(['TCP', 'UDP', 'SCTP'].includes(res.protocol));
      assert.ok(res.allowed === null || typeof res.allowed === 'boolean');
      if (res.protocol === 'SCTP') {
        assert.equal(res.allowed, null, `${c.id}: SCTP is not probed`);
        seen.skipped++;
        continue;
      }
      assert.notEqual(res.allowed, null, `${c.id}: ${res.from} -> ${res.to} ${res.protocol} not probed`);
      if (targets.get(`${res.protocol}/${res.port}`) === 'service-clusterip') {
        // Dialled the ClusterIP (service CIDR 10.96.0.0/16) on the Service port, not the pod.
        const [ns, pod] = res.to.split('/');
        assert.ok(res.viaService, `${c.id}: ${res.from} -> ${res.to} not through a Service`);
        if (suite === 'netpol') assert.equal(res.viaService, `${ns}/s-${ns}-${pod}`);
        assert.match(
          res.note ?? '',
          new RegExp(`^via service ${res.viaService} \\(ClusterIP 10\\.96\\.\\d+\\.\\d+:${res.port}\\)$`),
        );
        viaClusterIP++;
      } else assert.equal(res.viaService, undefined, `${c.id}: ${res.from} -> ${res.to}`);
      if (res.allowed) seen.allowed++;
      else seen.denied++;
      // Judged here from the observations, not from the report's own verdict.
      if (res.loopback || res.expected === undefined || res.expected === null) continue;
      compared++;
      if (res.allowed !== res.expected)
        problems.push(
          `${c.id}: ${res.from} -> ${res.to} ${res.protocol}/${res.port} expected ${String(res.expected)}, observed ${String(res.allowed)}`,
        );
    }
  }
  t.diagnostic(
    `${suite}: ${viaClusterIP} probes through a ClusterIP; ${loopback.length} loopback mismatches (not failing): ${loopback.slice(0, 5).join(', ')}`,
  );
  assert.deepEqual(problems.slice(0, 20), [], `${suite}: ${problems.length} problems`);
  assert.equal(r.code, 0, `${suite}: exit code`);
  // Not vacuous: real connections were made and real drops observed.
  assert.ok(compared > 1000, `${suite}: compared only ${compared}`);
  assert.ok(
    viaClusterIP >= (suite === 'netpol' ? 1000 : 32),
    `${suite}: ${viaClusterIP} through a ClusterIP`,
  );
  assert.ok(seen.allowed > 100 && seen.denied > 100, `${suite}: ${JSON.stringify(seen)}`);
  assert.deepEqual(leftovers(r.pid), [], `${suite}: the run left labs behind`);
  return loopbackViaService;
}

describe('conformance run --mode datapath (real connections in the lab)', () => {
  it('passes every case of netpol and cnp, and leaves no lab behind', async (t) => {
    // Both directories at once: probes mostly wait on timeouts, so the runs overlap well.
    const runs = await Promise.all(
      suites.map(async (suite) => {
        const started = Date.now();
        const dir = join(conformanceDir, suite, 'cases');
        const r = await run(
          ['conformance', 'run', '--cases', dir, '--mode', 'datapath', '-o', 'json'],
          300_000,
        );
        pids.push(r.pid);
        return { suite, dir, r, seconds: (Date.now() - started) / 1000 };
      }),
    );
    for (const run of runs) checkSuite(t, run);
  });

  it('passes every netpol case with --socket-lb off (Services translated by the tc programs)', async (t) => {
    const started = Date.now();
    const dir = join(conformanceDir, 'netpol', 'cases');
    const r = await run(
      ['conformance', 'run', '--cases', dir, '--mode', 'datapath', '--socket-lb', 'off', '-o', 'json'],
      300_000,
    );
    pids.push(r.pid);
    const hairpin = checkSuite(t, { suite: 'netpol', dir, r, seconds: (Date.now() - started) / 1000 });
    // A pod reaching itself through its Service is hairpinned at tc and judged by its policy: the
    // corpus' loopback expectations hold there too (over lo, the socket LB's path, they do not).
    assert.deepEqual(hairpin, [], 'loopback probes through a Service match their expectation');
  });

  for (const suite of ['netpol', 'cnp'] as const)
    it(`passes every ${suite} case with --host-routing legacy (the node's stack routes pod traffic)`, async (t) => {
      const started = Date.now();
      const dir = join(conformanceDir, suite, 'cases');
      const r = await run(
        [
          'conformance',
          'run',
          '--cases',
          dir,
          '--mode',
          'datapath',
          '--host-routing',
          'legacy',
          '-o',
          'json',
        ],
        300_000,
      );
      pids.push(r.pid);
      checkSuite(t, { suite, dir, r, seconds: (Date.now() - started) / 1000 });
    });

  it('removes its lab when interrupted (SIGINT)', async () => {
    let signalled = false;
    const r = await run(
      ['conformance', 'run', '--cases', join(conformanceDir, 'cnp', 'cases'), '--mode', 'datapath'],
      60_000,
      (stderr, child) => {
        if (!signalled && /lab conf-\d+-1 up/.test(stderr)) {
          signalled = true;
          child.kill('SIGINT');
        }
      },
    );
    pids.push(r.pid);
    assert.ok(signalled, `the lab never came up: ${r.stderr}`);
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /SIGINT: removing the conformance labs/);
    assert.deepEqual(leftovers(r.pid), []);
  });
});

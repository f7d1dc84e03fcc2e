// The L7 corpus (conformance/l7) in datapath mode, through the real CLI: a lab with its agent, the
// node proxy started on demand, the lab's cluster DNS serving the topology's zone, and every probe
// made from inside the source pod (or external): an HTTP probe is a real request on a new
// connection, a DNS probe a real query (UDP or TCP) to the DNS server pod, a resolve-then-connect
// probe a real lookup through the cluster DNS followed by the request to the answer. Each result
// carries the probe object it ran and what was observed: `allowed` (the lab server answered, with
// its echo of what it received; or the DNS server's answer), `l7-denied` (the proxy's 403 "Access
// denied"; or the DNS proxy's REFUSED) or `dropped` (no handshake; no DNS answer). Observations
// are judged here against the case files themselves, not from the report's own verdict.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Lab } from '../../src/lab/index.js';
import { stopAgent } from '../../src/agent/spawn.js';
import { conformanceDir, runDir } from '../../src/shared/paths.js';
import { weir } from '../support/cli.js';

interface ExpectedDns {
  rcode?: string;
  answers?: string[];
}

interface CaseFile {
  id: string;
  policies: unknown[];
  probes: { id: string; http?: unknown; dns?: unknown; fqdn?: unknown; resolveFirst?: boolean }[];
  expect: {
    probe: string;
    result: string;
    upstreamSaw?: { headers?: Record<string, string>; absentHeaders?: string[] };
    dns?: ExpectedDns;
    resolve?: ExpectedDns & { result?: string };
  }[];
}

interface Result {
  from: string;
  to: string;
  port: number;
  allowed: boolean | null;
  result?: string;
  note?: string;
  probe?: { id?: string; http?: { method: string; path: string } };
  http?: { status?: number; bodyPrefix?: string; upstreamSaw?: { headers: Record<string, string> } };
  dns?: ExpectedDns;
  resolve?: ExpectedDns & { result: string };
}

/** The expected DNS answer contradicted (rcode, and the addresses when listed), or undefined. */
function dnsProblem(want: ExpectedDns | undefined, got: ExpectedDns | undefined): string | undefined {
  if (!want) return undefined;
  if (want.rcode !== undefined && got?.rcode !== want.rcode)
    return `rcode ${got?.rcode ?? '(none)'}, expected ${want.rcode}`;
  const sorted = (a: string[] | undefined) => [...(a ?? [])].sort().join(',');
  if (want.answers !== undefined && sorted(got?.answers) !== sorted(want.answers))
    return `answers [${sorted(got?.answers)}], expected [${sorted(want.answers)}]`;
  return undefined;
}

interface Report {
  cases: { id: string; mode: string; pass: boolean | null; error?: string; results: Result[] }[];
}

const dir = join(conformanceDir, 'l7', 'cases');
const children = new Set<ChildProcess>();
const pids: number[] = [];

function leftovers(pid: number): string[] {
  const list = (d: string, prefix: string) => {
    try {
      return readdirSync(d).filter((n) => n.startsWith(prefix));
    } catch {
      return [];
    }
  };
  return [...list(join(runDir, 'labs'), `conf-${pid}-`), ...list('/var/run/netns', `weir-conf-${pid}-`)];
}

after(async () => {
  for (const c of children) c.kill('SIGKILL');
  for (const pid of pids)
    for (const name of leftovers(pid).filter((n) => !n.startsWith('weir-'))) {
      await stopAgent(name).catch(() => undefined);
      await (await Lab.open(name)).down();
    }
});

function run(args: string[], timeoutMs: number) {
  return new Promise<{ code: number | null; stdout: string; stderr: string; pid: number }>((resolve) => {
    const child = spawn(weir, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGINT'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, stdout, stderr, pid: child.pid ?? 0 });
    });
  });
}

/** Whether the case's policies use DNS rules or toFQDNs. */
function needsDnsProxy(c: CaseFile): boolean {
  const text = JSON.stringify(c.policies);
  return text.includes('"dns"') || text.includes('"toFQDNs"');
}

describe('conformance run --suite l7 --mode datapath (real HTTP requests and DNS queries)', () => {
  // eBPF host routing (the default), then the node's stack routing pod traffic (--host-routing legacy).
  for (const hostRouting of ['bpf', 'legacy'] as const)
    it(`passes every case, probe by probe (HTTP, DNS, resolve-then-connect), and leaves no lab behind (--host-routing ${hostRouting})`, async (t) => {
      const started = Date.now();
      const r = await run(
        [
          'conformance',
          'run',
          '--suite',
          'l7',
          '--mode',
          'datapath',
          '--host-routing',
          hostRouting,
          '-o',
          'json',
        ],
        600_000,
      );
      pids.push(r.pid);
      t.diagnostic(`l7 (${hostRouting}): ${((Date.now() - started) / 1000).toFixed(1)} s wall time`);
      const report = JSON.parse(r.stdout) as Report;
      const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
      assert.equal(report.cases.length, files.length, 'one report per case file');
      const cases = new Map(
        files.map((f) => {
          const c = JSON.parse(readFileSync(join(dir, f), 'utf8')) as CaseFile;
          return [c.id, c];
        }),
      );

      const problems: string[] = [];
      const seen: Record<string, number> = { allowed: 0, 'l7-denied': 0, dropped: 0 };
      const kinds: Record<string, number> = { http: 0, dns: 0, resolve: 0, control: 0 };
      let dnsCases = 0;
      for (const rc of report.cases) {
        const c = cases.get(rc.id);
        assert.ok(c, `${rc.id}: no such case file`);
        assert.equal(rc.mode, 'datapath');
        assert.equal(rc.results.length, c.probes.length, `${rc.id}: one result per probe`);
        if (needsDnsProxy(c)) dnsCases++;
        if (rc.pass !== true) problems.push(`${rc.id}: pass=${String(rc.pass)} ${rc.error ?? ''}`);
        rc.results.forEach((res, i) => {
          const probe = c.probes[i];
          assert.ok(probe, `${rc.id}: result ${i}`);
          assert.deepEqual(res.probe, probe, `${rc.id}: the result carries the probe object it ran`);
          const id = `${rc.id}/${probe.id}`;
          const kind =
            probe.fqdn !== undefined
              ? probe.resolveFirst
                ? 'resolve'
                : 'control'
              : probe.dns
                ? 'dns'
                : 'http';
          kinds[kind] = (kinds[kind] ?? 0) + 1;
          // Nothing is skipped any more: every probe ran and has one of the corpus' three results.
          assert.ok(
            ['allowed', 'l7-denied', 'dropped'].includes(res.result ?? ''),
            `${id}: ${res.result} ${res.note ?? ''}`,
          );
          assert.equal(res.allowed, res.result === 'allowed', `${id}: allowed only for 'allowed'`);
          seen[res.result as string] = (seen[res.result as string] ?? 0) + 1;
          const e = c.expect.find((x) => x.probe === probe.id);
          if (e && e.result !== res.result)
            problems.push(
              `${id} ${res.from} -> ${res.to}:${res.port}: expected ${e.result}, observed ${res.result} (${res.note ?? ''})`,
            );
          if (kind === 'dns') {
            // The answer seen in the pod: REFUSED only from the DNS proxy, else the server's own.
            if (res.result === 'l7-denied') assert.equal(res.dns?.rcode, 'REFUSED', id);
            if (res.result === 'allowed') assert.notEqual(res.dns?.rcode, 'REFUSED', id);
            if (res.result === 'dropped') assert.equal(res.dns, undefined, id);
            const bad = e?.result === res.result ? dnsProblem(e?.dns, res.dns) : undefined;
            if (bad) problems.push(`${id}: ${bad}`);
            return;
          }
          if (kind === 'resolve') {
            assert.ok(res.resolve, `${id}: the lookup is reported`);
            if (e?.resolve?.result !== undefined && res.resolve?.result !== e.resolve.result)
              problems.push(`${id}: lookup ${res.resolve?.result}, expected ${e.resolve.result}`);
            const bad = dnsProblem(e?.resolve, res.resolve);
            if (bad) problems.push(`${id}: lookup ${bad}`);
          }
          if (res.result === 'l7-denied') {
            assert.equal(res.http?.status, 403, id);
            assert.ok(res.http?.bodyPrefix?.startsWith('Access denied'), id);
          }
          if (res.result === 'allowed') assert.equal(res.http?.status, 200, id);
          for (const [name, value] of Object.entries(e?.upstreamSaw?.headers ?? {}))
            if (res.http?.upstreamSaw?.headers[name.toLowerCase()] !== value)
              problems.push(
                `${id}: the server saw ${name}: ${res.http?.upstreamSaw?.headers[name.toLowerCase()]}`,
              );
          for (const name of e?.upstreamSaw?.absentHeaders ?? [])
            if (res.http?.upstreamSaw?.headers[name.toLowerCase()] !== undefined)
              problems.push(`${id}: the server saw ${name}`);
        });
      }
      t.diagnostic(
        `l7: ${JSON.stringify(seen)}; probes ${JSON.stringify(kinds)}; ${dnsCases} cases with DNS rules or toFQDNs`,
      );
      assert.deepEqual(problems, []);
      // Not vacuous: every kind of probe ran many times and all three outcomes were observed often.
      assert.ok(
        (kinds.http ?? 0) > 100 &&
          (kinds.dns ?? 0) >= 30 &&
          (kinds.resolve ?? 0) >= 25 &&
          (kinds.control ?? 0) >= 5,
        JSON.stringify(kinds),
      );
      assert.ok(
        (seen.allowed ?? 0) > 30 && (seen['l7-denied'] ?? 0) > 30 && (seen.dropped ?? 0) > 20,
        JSON.stringify(seen),
      );
      assert.ok(dnsCases >= 10, `${dnsCases} cases with DNS rules or toFQDNs`);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(leftovers(r.pid), [], 'the run left labs behind');
    });
});

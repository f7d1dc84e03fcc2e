// The cost of weir-cni to a real runtime: podman (Debian's 4.3, CNI backend) starting and removing
// busybox containers in the bench lab's node, on network `weir` (ADD: the plugin asks the agent,
// which stores the attachment, reconciles, attaches the endpoint and answers; DEL the same way
// back) against `--network none` in the same run (no CNI at all), rounds interleaved so both see
// the same machine load. The podman harness is the podman test's (test/support/podman.ts).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installCni } from '../src/cli/commands/cni.js';
import { labDir, type Lab } from '../src/lab/index.js';
import { busyboxRootfs, PodmanHost } from '../test/support/podman.js';
import { percentile } from './scale.js';
import { type BenchRow, round2 } from './row.js';

export type CniRow = BenchRow;

export const cniLegend = (rounds: number) =>
  `- **podman, network none / weir**: \`podman run -d\` of a busybox container until it runs, and ` +
  `\`podman rm -f\`, ${rounds} rounds each, interleaved; network none is the same-run baseline ` +
  '(no CNI); weir adds weir-cni ADD/DEL through the agent (attachment stored, reconciled, endpoint attached)\n';

export async function measureCni(
  lab: Lab,
  labName: string,
  o: { rounds: number },
  log: (l: string) => void,
): Promise<CniRow[]> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-bench-cni-'));
  const cni = { confDir: join(dir, 'net.d'), binDir: join(dir, 'bin') };
  const podmanDir = join(labDir(labName), 'podman');
  const host = new PodmanHost((await lab.node()).netns, podmanDir, `/weir-${labName}/weir-podman`, cni);
  try {
    await installCni({ ...cni, lab: labName, network: 'weir', cniVersion: '1.0.0' });
    const rootfs = await busyboxRootfs(join(podmanDir, 'rootfs'));
    await host.start();
    const times: Record<'none' | 'weir', { run: number[]; rm: number[] }> = {
      none: { run: [], rm: [] },
      weir: { run: [], rm: [] },
    };
    const timed = async (fn: () => Promise<{ code: number; stderr: string }>) => {
      const t0 = performance.now();
      const r = await fn();
      if (r.code !== 0) throw new Error(`podman failed: ${r.stderr}`);
      return performance.now() - t0;
    };
    for (let i = 0; i < o.rounds; i++)
      for (const net of ['none', 'weir'] as const) {
        const name = `weir-bench-${net}-${i}`;
        times[net].run.push(await timed(() => host.run(name, rootfs, 'exec sleep 600', net)));
        times[net].rm.push(await timed(() => host.podman(['rm', '-f', '-t', '0', name])));
      }
    log(`cni: ${o.rounds} rounds of podman run/rm on network none and weir`);
    const rows: CniRow[] = [];
    for (const op of ['run', 'rm'] as const) {
      const base = percentile(times.none[op], 50);
      const value = percentile(times.weir[op], 50);
      const metric = op === 'run' ? 'podman run -d (median)' : 'podman rm -f (median)';
      rows.push({
        scenario: 'podman, network none',
        metric,
        value: round2(base),
        unit: 'ms',
        runs: times.none[op].map(round2),
      });
      rows.push({
        scenario: 'podman, network weir',
        metric,
        value: round2(value),
        unit: 'ms',
        runs: times.weir[op].map(round2),
        baseline: round2(base),
        ratio: value / base,
        note: `weir-cni ${op === 'run' ? 'ADD' : 'DEL'} adds ${round2(value - base)} ms; p90 ${round2(percentile(times.weir[op], 90))} ms`,
      });
    }
    return rows;
  } finally {
    await host.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

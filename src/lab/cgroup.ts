// cgroup v2 for lab workloads: one cgroup per pod under <root>/weir-<lab>, so per-pod eBPF
// (cgroup/connect4, sock_ops, ...) can be attached later and every process of a pod killed at once.
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../shared/exec.js';
import { runDir } from '../shared/paths.js';
import { killQuietly, waitFor } from './netns.js';

/** Where we mount cgroup2 if the host has none mounted. */
const fallbackRoot = join(runDir, 'cgroup');

/** The first cgroup2 mount in /proc/mounts, if any. */
export function findCgroup2(): string | undefined {
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [, mnt, type] = line.split(' ');
    if (type === 'cgroup2' && mnt) return mnt;
  }
  return undefined;
}

export async function ensureCgroup2(): Promise<string> {
  const found = findCgroup2();
  if (found) return found;
  await mkdir(fallbackRoot, { recursive: true });
  await run(['mount', '-t', 'cgroup2', 'none', fallbackRoot], { timeoutMs: 10_000 });
  return fallbackRoot;
}

export async function ensureCgroup(path: string): Promise<void> {
  await mkdir(path, { recursive: true });
}

async function procs(path: string): Promise<number[]> {
  const text = await readFile(join(path, 'cgroup.procs'), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map(Number);
}

/** cgroup.events says whether any task (zombies included) is still in the cgroup or below. */
async function populated(path: string): Promise<boolean> {
  const events = await readFile(join(path, 'cgroup.events'), 'utf8').catch(() => 'populated 0');
  return /^populated 1$/m.test(events);
}

/** Kills every process in `path` and its children, then removes the cgroups (deepest first). */
export async function removeCgroup(path: string): Promise<void> {
  if (!existsSync(path)) return;
  const children = (await readdir(path, { withFileTypes: true })).filter((d) => d.isDirectory());
  for (const c of children) await removeCgroup(join(path, c.name));
  // cgroup.kill (5.14+) kills atomically, also processes forking meanwhile; the loop is the fallback.
  await writeFile(join(path, 'cgroup.kill'), '1').catch(() => undefined);
  for (const pid of await procs(path)) killQuietly(pid, 'SIGKILL');
  // Empty once every process is gone and reaped: a killed child of ours stays a zombie (and keeps
  // the cgroup populated, so rmdir fails with EBUSY) until our event loop reaps it.
  await waitFor(async () => (await procs(path)).length === 0 && !(await populated(path)), 3000);
  await rmdir(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}

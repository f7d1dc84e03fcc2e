// Starts a workload inside a netns (nsenter keeps our mount namespace, so the workload can still
// see the cgroup v2 mount and join its cgroup), detached, logging to the lab's state directory.
import { openSync, closeSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { WeirError } from '../../shared/errors.js';
import { repoRoot } from '../../shared/paths.js';
import { privateFileMode } from '../../shared/private-fs.js';
import { killQuietly, netnsPath, waitFor } from '../netns.js';
import { pidAlive } from '../config.js';
import { ping } from './client.js';
import type { WorkloadConfig } from './protocol.js';

/** A running workload: its process, control socket and log. */
export interface WorkloadState {
  pid: number;
  socket: string;
  log: string;
}

export const workloadMain = join(repoRoot, 'dist', 'src', 'lab', 'workload', 'main.js');
const readyTimeoutMs = 10_000;

export function startWorkload(netns: string, cfg: WorkloadConfig, logPath: string): WorkloadState {
  const fd = openSync(logPath, 'a', privateFileMode);
  try {
    const child = spawn(
      'nsenter',
      [`--net=${netnsPath(netns)}`, '--', process.execPath, workloadMain, JSON.stringify(cfg)],
      {
        detached: true,
        stdio: ['ignore', fd, fd],
      },
    );
    child.unref();
    if (child.pid === undefined)
      throw new WeirError('ERR_LAB_WORKLOAD_START', `could not start the workload of ${cfg.name}`);
    return { pid: child.pid, socket: cfg.socket, log: logPath };
  } finally {
    closeSync(fd);
  }
}

/** Waits (bounded) until the workload answers ping; fails with the tail of its log if not. */
export async function waitReady(name: string, w: WorkloadState): Promise<void> {
  const ok = await waitFor(async () => {
    if (!pidAlive(w.pid)) return true;
    return ping(w.socket, 500);
  }, readyTimeoutMs);
  if (ok && pidAlive(w.pid)) return;
  let tail = '';
  try {
    tail = readFileSync(w.log, 'utf8').split('\n').slice(-8).join('\n');
  } catch {
    // no log yet
  }
  throw new WeirError(
    'ERR_LAB_WORKLOAD_START',
    `the workload of ${name} did not become ready (log ${w.log}):\n${tail}`,
  );
}

/** Whether `w.pid` is still our workload (and not a recycled pid). */
export function workloadAlive(w: WorkloadState | undefined): boolean {
  if (!w || !pidAlive(w.pid)) return false;
  try {
    return readFileSync(`/proc/${w.pid}/cmdline`, 'utf8').includes(w.socket);
  } catch {
    return false;
  }
}

export async function stopWorkload(w: WorkloadState | undefined): Promise<void> {
  if (!workloadAlive(w) || !w) return;
  killQuietly(w.pid, 'SIGTERM');
  if (!(await waitFor(() => !pidAlive(w.pid), 2000))) killQuietly(w.pid, 'SIGKILL');
}

/**
 * The workload of `cfg` running in its cgroup (found from the cgroup's processes: no record of
 * pids is needed), and whether it runs with exactly this configuration.
 */
export async function findWorkload(
  cfg: WorkloadConfig,
  logPath: string,
): Promise<(WorkloadState & { current: boolean }) | undefined> {
  if (!cfg.cgroup) return undefined;
  const procs = await readFile(`${cfg.cgroup}/cgroup.procs`, 'utf8').catch(() => '');
  for (const pid of procs.split('\n').filter(Boolean).map(Number)) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!cmdline.includes(workloadMain) || !cmdline.includes(cfg.socket)) continue;
    return { pid, socket: cfg.socket, log: logPath, current: cmdline.includes(JSON.stringify(cfg)) };
  }
  return undefined;
}

/** Starts the workload unless it already runs with this configuration (a stale one is replaced). */
export async function ensureWorkload(
  netns: string,
  cfg: WorkloadConfig,
  logPath: string,
): Promise<WorkloadState> {
  const found = await findWorkload(cfg, logPath);
  if (found?.current) return found;
  if (found) await stopWorkload(found);
  return startWorkload(netns, cfg, logPath);
}

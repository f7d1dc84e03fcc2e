// Starting, finding and driving a node's pod workload host (host.ts): one process per node,
// found by its control socket (no record of pids), started on demand inside the node's netns in
// its own cgroup under the lab's.
import { closeSync, openSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { WeirError, isCode } from '../../shared/errors.js';
import { repoRoot } from '../../shared/paths.js';
import { privateFileMode } from '../../shared/private-fs.js';
import { ensureCgroup } from '../cgroup.js';
import { netnsPath, waitFor } from '../netns.js';
import { call } from './client.js';
import type { HostConfig, HostReply } from './host.js';
import type { WorkloadConfig } from './protocol.js';
import type { WorkloadState } from './spawn.js';

export const hostMain = join(repoRoot, 'dist', 'src', 'lab', 'workload', 'host.js');
const readyTimeoutMs = 10_000;
const callTimeoutMs = 10_000;

/** Where a node's pod host listens, logs and runs. */
export interface PodHostPlace {
  nodeNetns: string;
  config: HostConfig;
  log: string;
}

const starting = new Map<string, Promise<number>>();

async function pingHost(socket: string, timeoutMs = 500): Promise<number | undefined> {
  try {
    const r = await call<HostReply>(socket, { op: 'ping' }, timeoutMs);
    return r.ok ? r.pid : undefined;
  } catch {
    return undefined;
  }
}

/** The host's pid, started first when none answers (concurrent callers share one start). */
export function ensureHost(h: PodHostPlace): Promise<number> {
  const pending = starting.get(h.config.socket);
  if (pending) return pending;
  const p = (async () => {
    const running = await pingHost(h.config.socket);
    if (running !== undefined) return running;
    await ensureCgroup(h.config.cgroup);
    const fd = openSync(h.log, 'a', privateFileMode);
    try {
      const child = spawn(
        'nsenter',
        [`--net=${netnsPath(h.nodeNetns)}`, '--', process.execPath, hostMain, JSON.stringify(h.config)],
        { detached: true, stdio: ['ignore', fd, fd] },
      );
      child.unref();
    } finally {
      closeSync(fd);
    }
    let pid: number | undefined;
    await waitFor(async () => (pid = await pingHost(h.config.socket)) !== undefined, readyTimeoutMs);
    if (pid === undefined)
      throw new WeirError('ERR_LAB_WORKLOAD_START', `the pod workload host did not start (log ${h.log})`);
    return pid;
  })();
  starting.set(h.config.socket, p);
  void p.then(
    () => starting.delete(h.config.socket),
    () => starting.delete(h.config.socket),
  );
  return p;
}

/** Serves a pod's workload from the host (again when its config changed): its ports are open on return. */
export async function hostAdd(
  h: PodHostPlace,
  netns: string,
  config: WorkloadConfig,
  log: string,
): Promise<WorkloadState> {
  const add = () =>
    call<HostReply>(h.config.socket, { op: 'add', netns, config, log } as { op: string }, callTimeoutMs);
  let r: HostReply;
  try {
    r = await add();
  } catch (err) {
    // No host answers (none started yet, or it died): start one, then ask again.
    if (!isCode(err, 'ERR_LAB_WORKLOAD_UNREACHABLE')) throw err;
    await ensureHost(h);
    r = await add();
  }
  if (!r.ok)
    throw new WeirError(
      'ERR_LAB_WORKLOAD_START',
      `the workload of ${config.name} could not start: ${r.error}`,
    );
  return { pid: r.pid, socket: config.socket, log };
}

/** Stops serving a pod (nothing to do when no host runs). */
export async function hostRemove(h: PodHostPlace, name: string): Promise<void> {
  if ((await pingHost(h.config.socket)) === undefined) return;
  await call<HostReply>(h.config.socket, { op: 'remove', name } as { op: string }, callTimeoutMs);
}

/** Whether the host runs and serves this pod. */
export async function hostHas(h: PodHostPlace, name: string): Promise<boolean> {
  try {
    return (await call<HostReply>(h.config.socket, { op: 'has', name } as { op: string }, callTimeoutMs)).ok;
  } catch {
    return false;
  }
}

// The lab's record of what it created: /run/weir/labs/<lab>/state.json, the source of truth for
// the CLI, the agent and tests. Written atomically (tmp + rename) under a per-lab lock; root's
// alone (0600 in 0700 directories): it names every pod, address and label.
import { open, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { PodPort } from '../k8s/core.js';
import { WeirError } from '../shared/errors.js';
import { runDir } from '../shared/paths.js';
import { privateDir, privateFileMode } from '../shared/private-fs.js';
import type { LabSpec } from './spec.js';

export const labsDir = join(runDir, 'labs');

export interface WorkloadState {
  pid: number;
  socket: string;
  log: string;
}

export interface NodeState {
  name: string;
  netns: string;
  ip: string;
  ip6?: string;
  podCIDR: string;
  podCIDRv6?: string;
  cgroupPath: string;
  workload?: WorkloadState;
}

export interface ExternalState {
  name: string;
  ip: string;
  netns: string;
  /** The veth end in the node netns, and the /31 addresses of both ends. */
  nodeIfname: string;
  transitNodeIP: string;
  transitExtIP: string;
  serves: { port: number; protocol: 'TCP' | 'UDP' }[];
  cgroupPath: string;
  workload?: WorkloadState;
}

export interface NamespaceState {
  name: string;
  labels: Record<string, string>;
  annotations?: Record<string, string>;
  uid?: string;
  createdAt?: string;
}

export interface PodState {
  namespace: string;
  name: string;
  /** Given at creation (labs made before weir kept one have none). */
  uid?: string;
  labels: Record<string, string>;
  annotations?: Record<string, string>;
  /** The containers as applied (name, image, ports); `ports` is all of their ports in order. */
  containers?: ContainerState[];
  ports: PodPort[];
  node: string;
  ip: string;
  ip6?: string;
  netns: string;
  /** The host-side veth, in the node netns: where tc programs for this pod attach. */
  hostIfname: string;
  hostIfindex: number;
  cgroupPath: string;
  workload?: WorkloadState;
  /** Created with annotation weir.dev/workload: "none": no workload process, ever. */
  noWorkload?: true;
  /** Annotated weir.dev/terminating: "true": a TERMINATING service backend (no new connections). */
  terminating?: true;
  createdAt: string;
}

export interface ContainerState {
  name: string;
  image?: string;
  ports: PodPort[];
}

export interface LabState {
  version: 1;
  name: string;
  spec: LabSpec;
  cgroupRoot: string;
  /** <cgroupRoot>/weir-<lab>: every workload cgroup of the lab lives below it. */
  cgroupPath: string;
  createdAt: string;
  node?: NodeState;
  externals: ExternalState[];
  namespaces: Record<string, NamespaceState>;
  /** Keyed "namespace/name". */
  pods: Record<string, PodState>;
}

export const labDir = (lab: string) => join(labsDir, lab);
export const statePath = (lab: string) => join(labDir(lab), 'state.json');

export async function readState(lab: string): Promise<LabState | undefined> {
  let text: string;
  try {
    text = await readFile(statePath(lab), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return JSON.parse(text) as LabState;
  } catch (err) {
    throw new WeirError('ERR_LAB_STATE_CORRUPT', `${statePath(lab)} is not valid JSON; run 'weir lab down'`, {
      cause: err,
    });
  }
}

export async function writeState(state: LabState): Promise<void> {
  const dir = labDir(state.name);
  await privateDir(dir);
  const tmp = join(dir, `state.json.${process.pid}.tmp`);
  await rm(tmp, { force: true }); // a leftover would keep its old mode
  await writeFile(tmp, JSON.stringify(state, null, 2) + '\n', { mode: privateFileMode });
  await rename(tmp, statePath(state.name));
}

/** Names of the labs that have a state directory. */
export async function listLabs(): Promise<string[]> {
  const names = await readdir(labsDir, { withFileTypes: true }).catch(() => []);
  return names.filter((d) => d.isDirectory()).map((d) => d.name);
}

/**
 * Runs `fn` holding the lab's lock (a file naming the holder's pid beside the state dir, so a
 * holder killed with SIGKILL does not block the next command for ever).
 */
export async function withLabLock<T>(lab: string, fn: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
  await privateDir(labsDir);
  const lock = join(labsDir, `.${lab}.lock`);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fh = await open(lock, 'wx', privateFileMode);
      await fh.writeFile(String(process.pid));
      await fh.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(await readFile(lock, 'utf8').catch(() => ''));
      // An empty file is a holder between open and write: wait for it like for a live one.
      if (holder && !pidAlive(holder)) {
        await rm(lock, { force: true });
        continue;
      }
      if (Date.now() > deadline)
        throw new WeirError('ERR_LAB_LOCKED', `lab ${lab} is locked by process ${holder} (${lock})`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { force: true });
  }
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

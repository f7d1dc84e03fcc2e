// A lab's configuration: the spec `weir lab up` was given and where its cgroups live, in
// /run/weir/labs/<lab>/lab.json. It is the lab's input, not a record of what runs: nodes,
// externals and pods are found from their names in the kernel, and what users applied is in the
// node agent's Store. Written atomically under a per-lab lock; root's alone (0600 in 0700
// directories), like everything of the lab.
import { open, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WeirError } from '../shared/errors.js';
import { privateDir, privateFileMode } from '../shared/private-fs.js';
import { labDir, labsDir } from './names.js';
import type { LabSpec } from './spec.js';

export interface LabConfig {
  version: 2;
  name: string;
  spec: LabSpec;
  cgroupRoot: string;
  createdAt: string;
  /**
   * The cluster Store of a lab of several nodes (or one given --kvstore-endpoints): etcd's client
   * URLs, reachable from the node namespaces; `managed`: the lab runs it (in its underlay namespace).
   */
  kvstore?: { endpoints: string[]; managed: boolean };
}

export const configPath = (lab: string) => join(labDir(lab), 'lab.json');

export async function readConfig(lab: string): Promise<LabConfig | undefined> {
  let text: string;
  try {
    text = await readFile(configPath(lab), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const c = JSON.parse(text) as LabConfig;
    if (c.version !== 2) throw new Error(`unknown version ${String(c.version)}`);
    return c;
  } catch (err) {
    throw new WeirError(
      'ERR_LAB_STATE_CORRUPT',
      `${configPath(lab)} is not a lab configuration (${(err as Error).message}); run 'weir lab down'`,
      { cause: err },
    );
  }
}

export async function writeConfig(c: LabConfig): Promise<void> {
  const dir = labDir(c.name);
  await privateDir(dir);
  const tmp = join(dir, `lab.json.${process.pid}.tmp`);
  await rm(tmp, { force: true }); // a leftover would keep its old mode
  await writeFile(tmp, JSON.stringify(c, null, 2) + '\n', { mode: privateFileMode });
  await rename(tmp, configPath(c.name));
}

/** Names of the labs that have a directory. */
export async function listLabs(): Promise<string[]> {
  const names = await readdir(labsDir, { withFileTypes: true }).catch(() => []);
  return names.filter((d) => d.isDirectory()).map((d) => d.name);
}

/**
 * Runs `fn` holding the lab's lock (a file naming the holder's pid beside the lab dir, so a
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

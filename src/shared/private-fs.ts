// weir's run-time state is root's alone, like the agent's socket: the lab's state (pods, addresses,
// labels), logs and sockets live in directories of mode 0700, files are 0600. Directories made
// by an older weir are tightened too: every directory from runDir down to the one asked for is
// (re)set to 0700 (runDir itself only when it is weir's own, e.g. /run/weir, never a WEIR_RUN_DIR
// such as /tmp).
import { chmodSync, mkdirSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import { basename, join, relative, sep } from 'node:path';
import { runDir } from './paths.js';

export const privateDirMode = 0o700;
export const privateFileMode = 0o600;

/** runDir, then each directory below it down to `dir` (only `dir` when it is outside runDir). */
function chain(dir: string): string[] {
  const rel = relative(runDir, dir);
  const own = basename(runDir).includes('weir') ? [runDir] : [];
  if (rel === '') return own;
  if (rel.startsWith('..') || rel.startsWith(sep)) return [dir];
  const out = [runDir];
  for (const part of rel.split(sep)) out.push(join(out[out.length - 1] as string, part));
  return [...own, ...out.slice(1)];
}

/** mkdir -p `dir`, and mode 0700 on it and every directory between runDir and it. */
export async function privateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: privateDirMode });
  for (const d of chain(dir)) await chmod(d, privateDirMode);
}

export function privateDirSync(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: privateDirMode });
  for (const d of chain(dir)) chmodSync(d, privateDirMode);
}

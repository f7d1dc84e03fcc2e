// Network namespace plumbing with iproute2. Every command names its netns explicitly (`ip -n`),
// so nothing here can touch the root namespace by accident.
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { run } from '../shared/exec.js';

const netnsDir = '/var/run/netns';
const ipTimeout = 10_000;

export const netnsPath = (name: string) => `${netnsDir}/${name}`;
export const netnsExists = (name: string) => existsSync(netnsPath(name));

/** `ip -n <ns> ...args`. */
export async function ipIn(ns: string, args: string[]): Promise<string> {
  return (await run(['ip', '-n', ns, ...args], { timeoutMs: ipTimeout })).stdout;
}

/** Several `ip` commands in one process, all inside `ns` (one line per command). */
export async function ipBatch(ns: string, commands: string[][]): Promise<void> {
  if (commands.length === 0) return;
  await run(['ip', '-n', ns, '-batch', '-'], {
    input: commands.map((c) => c.join(' ')).join('\n') + '\n',
    timeoutMs: ipTimeout,
  });
}

/**
 * Many `ip` commands in one process, each owned by an item `i`, carrying on past failures
 * (`-force`): the items whose commands failed get an error in `errors`. `ns` undefined: commands
 * that name their netns themselves (`netns add`), never anything of the root netns.
 */
export async function ipBatchEach(
  ns: string | undefined,
  commands: { i: number; cmd: string[] }[],
  errors: Map<number, Error>,
): Promise<void> {
  if (commands.length === 0) return;
  const r = await run(['ip', ...(ns ? ['-n', ns] : []), '-force', '-batch', '-'], {
    input: commands.map((c) => c.cmd.join(' ')).join('\n') + '\n',
    timeoutMs: ipTimeout + commands.length * 50,
    check: false,
  });
  if (r.code === 0) return;
  // iproute2 reports each failed line: "Command failed -:<line>" after the command's own message.
  const lines = r.stderr.split('\n');
  let failed = 0;
  lines.forEach((l, k) => {
    const m = /^Command failed -:(\d+)$/.exec(l.trim());
    const c = m ? commands[Number(m[1]) - 1] : undefined;
    if (!c) return;
    failed++;
    if (!errors.has(c.i)) errors.set(c.i, new Error(`ip ${c.cmd.join(' ')}: ${lines[k - 1] ?? ''}`.trim()));
  });
  if (failed === 0)
    for (const c of commands)
      if (!errors.has(c.i)) errors.set(c.i, new Error(`ip -batch failed (${r.code}): ${r.stderr.trim()}`));
}

export async function addNetns(name: string): Promise<void> {
  if (!netnsExists(name)) await run(['ip', 'netns', 'add', name], { timeoutMs: ipTimeout });
}

/** Sets sysctls inside `ns` only (keys like net.ipv4.ip_forward). */
export async function sysctlIn(ns: string, settings: Record<string, string | number>): Promise<void> {
  const args = Object.entries(settings).map(([k, v]) => `${k}=${v}`);
  await run(['ip', 'netns', 'exec', ns, 'sysctl', '-qw', ...args], { timeoutMs: ipTimeout });
}

/** Every netns whose name starts with `prefix`. */
export async function listNetns(prefix: string): Promise<string[]> {
  const names = await readdir(netnsDir).catch(() => []);
  return names.filter((n) => n.startsWith(prefix)).sort();
}

export async function netnsPids(name: string): Promise<number[]> {
  const res = await run(['ip', 'netns', 'pids', name], { check: false, timeoutMs: ipTimeout });
  return res.stdout.split(/\s+/).filter(Boolean).map(Number);
}

/** Kills what still runs in `name`, then deletes it (its veth ends go with it). */
export async function deleteNetns(name: string): Promise<void> {
  if (!netnsExists(name)) return;
  const pids = await netnsPids(name);
  for (const pid of pids) killQuietly(pid, 'SIGKILL');
  // Looked at again only when something ran there (a pod's netns usually holds no process).
  if (pids.length > 0) await waitFor(async () => (await netnsPids(name)).length === 0, 3000);
  await run(['ip', 'netns', 'del', name], { check: false, timeoutMs: ipTimeout });
}

export async function ifindexIn(ns: string, ifname: string): Promise<number> {
  const out = JSON.parse(await ipIn(ns, ['-j', 'link', 'show', 'dev', ifname])) as { ifindex: number }[];
  const idx = out[0]?.ifindex;
  if (idx === undefined) throw new Error(`no ${ifname} in ${ns}`);
  return idx;
}

export function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone: that is what we wanted.
  }
}

/** Polls `cond` every 20 ms until it holds or `ms` pass; returns whether it held. */
export async function waitFor(cond: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

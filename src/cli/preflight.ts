// What a command needs before it runs, checked in one place so every command fails the same clear
// way: root (weir's lab state, logs, sockets, BPF maps and network namespaces are root's alone),
// and for a command on a lab (--lab), that the lab exists. The exceptions are the commands that
// work offline on files.
import type { Command } from 'commander';
import { Lab } from '../lab/index.js';
import { WeirError } from '../shared/errors.js';

export interface Needs {
  root: boolean;
  /** The lab named by --lab must exist. */
  lab: boolean;
}

/** "get", "lab status", "bpf ct list": the sub-command words of `cmd`. */
export function commandPath(cmd: Command): string {
  const words: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) words.unshift(c.name());
  return words.join(' ');
}

export function needs(path: string, opts: Record<string, unknown>): Needs {
  const offline =
    ((path === 'policy trace' || path === 'route trace') &&
      Array.isArray(opts.filename) &&
      opts.filename.length > 0) ||
    (path === 'conformance run' && opts.mode === 'simulate');
  if (offline) return { root: false, lab: false };
  // lab up creates the lab; lab down also removes leftovers of one whose state is gone.
  if (path === 'lab up' || path === 'lab down') return { root: true, lab: false };
  // Removing the runtime's config and plugin works after the lab is gone.
  if (path === 'cni uninstall') return { root: true, lab: false };
  return { root: true, lab: typeof opts.lab === 'string' };
}

export async function preflight(cmd: Command, euid = process.geteuid?.()): Promise<void> {
  const path = commandPath(cmd);
  const opts = cmd.opts();
  const n = needs(path, opts);
  if (n.root && euid !== 0)
    throw new WeirError(
      'ERR_CLI_NEEDS_ROOT',
      `weir needs root: 'weir ${path}' works on root-only lab state, sockets, BPF maps and network namespaces (run it as root, e.g. with sudo)`,
    );
  if (n.lab) await (await Lab.open(opts.lab as string)).requireExists();
}

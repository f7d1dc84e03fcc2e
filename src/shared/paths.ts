// Where weir's own files are: the checkout it runs from, compiled BPF objects, run-time state.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The checkout's root (the folder holding package.json), from dist/src/shared/paths.js. */
export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** A compiled BPF object, e.g. bpfObject('lxc') -> <root>/dist/bpf/lxc.o */
export function bpfObject(name: string): string {
  return join(repoRoot, 'dist', 'bpf', `${name}.o`);
}

/** Root of weir's run-time state (labs, sockets, pid files). */
export const runDir = process.env.WEIR_RUN_DIR ?? '/run/weir';

/** Root of weir's pinned BPF objects. */
export const bpffsRoot = '/sys/fs/bpf';
export const pinRoot = join(bpffsRoot, 'weir');

/** The conformance corpora, kept in the checkout (conformance/<suite>/{README.md,topology.json,cases/}). */
export const conformanceDir = join(repoRoot, 'conformance');

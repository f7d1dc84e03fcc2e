// Running the real `weir` CLI from tests, the way a user does.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../../src/shared/paths.js';

export const weir = join(repoRoot, 'bin', 'weir');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function cli(args: string[], lab: string, timeoutMs = 120_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      weir,
      args,
      { env: { ...process.env, WEIR_LAB: lab }, timeout: timeoutMs, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Runs the CLI and fails the test unless it exits 0; returns stdout. */
export async function ok(args: string[], lab: string, timeoutMs?: number): Promise<string> {
  const r = await cli(args, lab, timeoutMs);
  assert.equal(r.code, 0, `weir ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** The last line a command printed (a script's result), parsed as JSON (`{}` when empty). */
export function lastJson<T>(stdout: string): T {
  return JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as T;
}

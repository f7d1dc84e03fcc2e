// weir-cni's process entry (bin/weir-cni): reads the network configuration from stdin, runs the
// command CNI_COMMAND names, writes the result or the error to stdout and exits 0 or 1. Nothing
// else goes to stdout; diagnostics go to stderr, which runtimes log.
import { runCni } from './commands.js';

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return '';
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const out = await runCni(process.env, await readStdin());
if (out.stdout) process.stdout.write(out.stdout + '\n');
process.exitCode = out.exitCode;

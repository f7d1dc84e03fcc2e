// The `weir` command: one program, one sub-command per domain (each in commands/<domain>.ts).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { WeirError } from '../shared/errors.js';
import { repoRoot } from '../shared/paths.js';
import { registerCommands } from './commands/index.js';
import { preflight } from './preflight.js';

const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };

export function buildProgram(): Command {
  const program = new Command('weir')
    .description('eBPF-first networking, security and observability for Kubernetes-style workloads')
    .version(pkg.version, '-v, --version')
    .showHelpAfterError('(add --help for usage)')
    .configureHelp({ sortSubcommands: true });
  registerCommands(program);
  // Root, and the lab of --lab, before any command runs (--help and --version need neither).
  program.hook('preAction', (_program, command) => preflight(command));
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    if (err instanceof WeirError) {
      process.stderr.write(`Error: ${err.toString()} [${err.code}]\n`);
      if (process.env.WEIR_DEBUG && err.stack) process.stderr.write(err.stack + '\n');
      return 1;
    }
    process.stderr.write(`Error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));

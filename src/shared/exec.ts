// Running other programs (ip, tc, iperf3, …): argument vectors only, never a shell string.
import { spawn, type SpawnOptions } from 'node:child_process';
import { WeirError } from './errors.js';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Fail with ERR_EXEC_FAILED on a non-zero exit (default true). */
  check?: boolean;
  input?: string;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

export function run(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
  const [cmd, ...args] = argv;
  if (!cmd) throw new WeirError('ERR_EXEC_EMPTY', 'empty command');
  const spawnOpts: SpawnOptions = { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env };
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, spawnOpts);
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer =
      opts.timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.on('error', (err) => {
      if (timer) clearTimeout(timer);
      reject(new WeirError('ERR_EXEC_FAILED', `${cmd}: ${err.message}`, { cause: err }));
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      const res = { code: code ?? (signal ? 128 : 1), stdout, stderr };
      if ((opts.check ?? true) && res.code !== 0) {
        reject(
          new WeirError(
            'ERR_EXEC_FAILED',
            `'${argv.join(' ')}' exited ${res.code}: ${stderr.trim() || stdout.trim()}`,
            {
              details: { ...res },
            },
          ),
        );
      } else resolve(res);
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

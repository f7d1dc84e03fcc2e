// The conformance echo server (src/gateway/echo.ts) started in lab pods, for the Gateway tests.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { echoServerScript } from '../../src/gateway/echo.js';
import { weir } from './cli.js';

/**
 * Runs the echo server on `port` in each pod `namespace/name` of the lab and waits until each
 * says "ready" (15 s each). The processes are returned to be killed by the caller.
 */
export async function startEchoPods(
  lab: string,
  namespace: string,
  pods: string[],
  port = 3000,
): Promise<ChildProcessWithoutNullStreams[]> {
  const servers: ChildProcessWithoutNullStreams[] = [];
  for (const pod of pods) {
    const s = spawn(
      weir,
      [
        'lab',
        'exec',
        `${namespace}/${pod}`,
        '--',
        process.execPath,
        '-e',
        echoServerScript,
        String(port),
        namespace,
        pod,
      ],
      { env: { ...process.env, WEIR_LAB: lab } },
    );
    servers.push(s);
    const lines = createInterface({ input: s.stdout })[Symbol.asyncIterator]();
    let timer: NodeJS.Timeout | undefined;
    const ready = await Promise.race([
      lines.next(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`echo server in ${pod} not ready in 15 s`)), 15_000);
      }),
    ]).finally(() => clearTimeout(timer));
    if (ready.value !== 'ready') {
      for (const x of servers) x.kill('SIGKILL');
      throw new Error(`echo server in ${pod} said ${String(ready.value)}, not ready`);
    }
  }
  return servers;
}

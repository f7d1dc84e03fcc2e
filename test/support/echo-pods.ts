// Processes started in lab pods that say "ready" once they serve: the conformance echo server
// (src/gateway/echo.ts) for the Gateway tests, and any other such server of a test.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { echoServerScript } from '../../src/gateway/echo.js';
import { weir } from './cli.js';

/**
 * Runs `argv` in pod `pod` ("namespace/name") of the lab (`weir lab exec`) and waits until its
 * first line is "ready" (15 s); fails, the process killed, otherwise. The process is returned to be
 * killed by the caller.
 */
export async function startInPod(
  lab: string,
  pod: string,
  argv: string[],
  what: string,
): Promise<ChildProcessWithoutNullStreams> {
  const s = spawn(weir, ['lab', 'exec', pod, '--', ...argv], { env: { ...process.env, WEIR_LAB: lab } });
  const lines = createInterface({ input: s.stdout })[Symbol.asyncIterator]();
  let timer: NodeJS.Timeout | undefined;
  try {
    const ready = await Promise.race([
      lines.next(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} in ${pod} not ready in 15 s`)), 15_000);
      }),
    ]).finally(() => clearTimeout(timer));
    if (ready.value !== 'ready') throw new Error(`${what} in ${pod} said ${String(ready.value)}, not ready`);
  } catch (e) {
    s.kill('SIGKILL');
    throw e;
  }
  return s;
}

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
    try {
      servers.push(
        await startInPod(
          lab,
          `${namespace}/${pod}`,
          [process.execPath, '-e', echoServerScript, String(port), namespace, pod],
          'echo server',
        ),
      );
    } catch (e) {
      for (const x of servers) x.kill('SIGKILL');
      throw e;
    }
  }
  return servers;
}

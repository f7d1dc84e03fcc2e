// Processes a test talks to line by line: the next line of a stream within a time, a process
// started in a lab pod that says "ready" once it serves, and the long-lived echo conversation from
// a lab pod (a connection whose every line must come back on it).
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { Readable } from 'node:stream';
import { createInterface } from 'node:readline';
import { weir } from './cli.js';

/**
 * Reads `input` line by line: the function returned resolves with the next line, or 'eof' once
 * the stream ended, and rejects with Error(`failure`) when none came within `timeoutMs`.
 */
export function lineReader(input: Readable): (timeoutMs: number, failure?: string) => Promise<string> {
  const lines = createInterface({ input })[Symbol.asyncIterator]();
  return async (timeoutMs, failure = `no line within ${timeoutMs} ms`) => {
    let timer: NodeJS.Timeout | undefined;
    try {
      const r = await Promise.race([
        lines.next(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(failure)), timeoutMs);
        }),
      ]);
      return r.done ? 'eof' : r.value;
    } finally {
      clearTimeout(timer);
    }
  };
}

/**
 * Runs `argv` in pod `pod` ("namespace/name") of the lab (`weir lab exec`) and waits until its
 * first line is "ready" (`readyMs`); fails, the process killed, otherwise. The process is returned
 * to be killed by the caller.
 */
export async function startInPod(
  lab: string,
  pod: string,
  argv: string[],
  what: string,
  readyMs = 15_000,
): Promise<ChildProcessWithoutNullStreams> {
  const s = spawn(weir, ['lab', 'exec', pod, '--', ...argv], { env: { ...process.env, WEIR_LAB: lab } });
  try {
    const ready = await lineReader(s.stdout)(readyMs, `${what} in ${pod} not ready in ${readyMs / 1000} s`);
    if (ready !== 'ready') throw new Error(`${what} in ${pod} said ${ready}, not ready`);
  } catch (e) {
    s.kill('SIGKILL');
    throw e;
  }
  return s;
}

/**
 * A long-lived TCP connection from pod `from` of lab `lab` to `ip`:`port` (an echo): every ping()
 * sends a numbered line and expects it back on the SAME connection within 3 s. Its first line is
 * `connected <the client's local port>`, or with `says: 'server'` `connected <ip>:<port>` of the
 * server as the client's socket has it.
 */
export class Conversation {
  private readonly child: ChildProcessWithoutNullStreams;
  /** The next line the client printed (`connected …`, `echo <line>`, `error <code>`, `closed`). */
  readonly next: (timeoutMs: number) => Promise<string>;
  private n = 0;

  constructor(lab: string, from: string, ip: string, port: number, says: 'local-port' | 'server') {
    const connected = says === 'server' ? "s.remoteAddress + ':' + s.remotePort" : 's.localPort';
    const script = `
      const s = require('net').connect(${port}, ${JSON.stringify(ip)});
      s.setNoDelay(true);
      s.on('connect', () => console.log('connected ' + ${connected}));
      s.on('error', (e) => { console.log('error ' + e.code); process.exit(1); });
      s.on('close', () => { console.log('closed'); process.exit(1); });
      let buf = '';
      s.on('data', (d) => { buf += d; let i; while ((i = buf.indexOf('\\n')) >= 0) { console.log('echo ' + buf.slice(0, i)); buf = buf.slice(i + 1); } });
      require('readline').createInterface({ input: process.stdin }).on('line', (l) => s.write(l + '\\n'));
    `;
    this.child = spawn(weir, ['lab', 'exec', from, '--', process.execPath, '-e', script], {
      env: { ...process.env, WEIR_LAB: lab },
    });
    const next = lineReader(this.child.stdout);
    this.next = (timeoutMs) => next(timeoutMs, `no answer within ${timeoutMs} ms`);
  }

  /** The first line, once connected (10 s). */
  open(): Promise<string> {
    return this.next(10_000);
  }

  /** Sends a line and expects it back on the same connection within 3 s. */
  async ping(): Promise<void> {
    const msg = `ping-${++this.n}`;
    this.child.stdin.write(msg + '\n');
    assert.equal(await this.next(3000), `echo ${msg}`);
  }

  close(): void {
    this.child.kill('SIGKILL');
  }
}

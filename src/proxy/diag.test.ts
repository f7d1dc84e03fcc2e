// The proxy threads' diagnostics (WEIR_PROXY_DIAG): off without the variable; with it, a line per
// interval with the event-loop delay a blocked loop caused, the GC pauses, CPU and run-queue time.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { diagSeconds, startDiag } from './diag.js';

interface Line {
  msg: string;
  diag: {
    thread: number;
    loopMs: { p50: number; p99: number; max: number };
    gc: { n: number; ms: number; maxMs: number; kinds: Record<string, number> };
    cpuMs: number;
    runqueueMs: number;
    preempted: number;
  };
}

function capture(): { log: pino.Logger; lines: Line[] } {
  const lines: Line[] = [];
  const out = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Line);
      cb();
    },
  });
  return { log: pino(out), lines };
}

describe('proxy thread diagnostics', () => {
  it('are off unless WEIR_PROXY_DIAG names an interval', () => {
    const saved = process.env.WEIR_PROXY_DIAG;
    try {
      delete process.env.WEIR_PROXY_DIAG;
      assert.equal(diagSeconds(), 0);
      process.env.WEIR_PROXY_DIAG = 'x';
      assert.equal(diagSeconds(), 0);
      process.env.WEIR_PROXY_DIAG = '0.2';
      assert.equal(diagSeconds(), 0.2);
    } finally {
      if (saved === undefined) delete process.env.WEIR_PROXY_DIAG;
      else process.env.WEIR_PROXY_DIAG = saved;
    }
  });

  it('report a blocked event loop, a forced GC and the CPU the thread used', async () => {
    process.env.WEIR_PROXY_DIAG = '0.3';
    const { log, lines } = capture();
    const stop = startDiag(log, 7);
    try {
      // Busy for 150 ms (the loop is blocked: one delay of most of that), with garbage.
      await new Promise((r) => setTimeout(r, 20));
      const until = Date.now() + 150;
      let junk: unknown[] = [];
      while (Date.now() < until) junk.push({ a: Math.random() });
      junk = [];
      const gc = (globalThis as { gc?: () => void }).gc;
      if (gc) gc();
      await new Promise((r) => setTimeout(r, 400));
    } finally {
      stop();
      delete process.env.WEIR_PROXY_DIAG;
    }
    const d = lines.find((l) => l.msg === 'proxy diag')?.diag;
    assert.ok(d, 'a diag line');
    assert.equal(d.thread, 7);
    assert.ok(d.loopMs.max >= 75, `loop delay max ${d.loopMs.max} ms`);
    // Busy 150 ms of wall time: on the CPU or, on a loaded machine, waiting for it.
    assert.ok(d.cpuMs + d.runqueueMs >= 75, `CPU ${d.cpuMs} ms, run-queue ${d.runqueueMs} ms`);
    assert.ok(d.gc.n >= 1, 'GC pauses seen');
    assert.ok(d.runqueueMs >= 0 && d.preempted >= 0);
  });
});

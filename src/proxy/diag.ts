// Diagnostics of a proxy thread, off by default: with WEIR_PROXY_DIAG=<seconds> in the proxy's
// environment (the agent's is inherited) every thread logs, every <seconds>, one line `proxy
// diag` with what it saw in that interval: its event-loop delay (perf_hooks
// monitorEventLoopDelay, 2-ms resolution), its GC pauses (PerformanceObserver 'gc': count, total,
// longest, by kind), its CPU time and the time it waited, runnable, for a core (the kernel's
// /proc/thread-self/schedstat) and how often it was preempted (nonvoluntary context switches).
// Used to find where the HTTP/1.1 latency tail comes from (bench/l7.ts reads these lines back).
import { readFileSync } from 'node:fs';
import { PerformanceObserver, monitorEventLoopDelay } from 'node:perf_hooks';
import type { Logger } from 'pino';

/** The interval (s) set by WEIR_PROXY_DIAG, or 0 (off). */
export const diagSeconds = (): number => {
  const s = Number(process.env.WEIR_PROXY_DIAG ?? 0);
  return Number.isFinite(s) && s > 0 ? s : 0;
};

interface Sched {
  cpuNs: number;
  waitNs: number;
  preempted: number;
}

function sched(): Sched {
  try {
    const [cpu, wait] = readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ');
    const status = readFileSync('/proc/thread-self/status', 'utf8');
    return {
      cpuNs: Number(cpu),
      waitNs: Number(wait),
      preempted: Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0),
    };
  } catch {
    return { cpuNs: 0, waitNs: 0, preempted: 0 };
  }
}

const ms = (ns: number) => Math.round(ns / 1e4) / 100;

/** Starts the diagnostics of this thread if WEIR_PROXY_DIAG asks for them; returns a stop function. */
export function startDiag(log: Logger, thread: number): () => void {
  const every = diagSeconds();
  if (!every) return () => undefined;
  const loop = monitorEventLoopDelay({ resolution: 2 });
  loop.enable();
  let gc = { n: 0, ms: 0, maxMs: 0, kinds: {} as Record<string, number> };
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gc.n++;
      gc.ms += e.duration;
      if (e.duration > gc.maxMs) gc.maxMs = e.duration;
      const kind = String((e as { detail?: { kind?: number } }).detail?.kind ?? '?');
      gc.kinds[kind] = (gc.kinds[kind] ?? 0) + 1;
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  let last = sched();
  const timer = setInterval(() => {
    const now = sched();
    log.info(
      {
        diag: {
          thread,
          loopMs: {
            p50: ms(loop.percentile(50)),
            p99: ms(loop.percentile(99)),
            max: ms(loop.max),
            mean: ms(loop.mean),
          },
          gc: {
            n: gc.n,
            ms: Math.round(gc.ms * 100) / 100,
            maxMs: Math.round(gc.maxMs * 100) / 100,
            kinds: gc.kinds,
          },
          cpuMs: ms(now.cpuNs - last.cpuNs),
          runqueueMs: ms(now.waitNs - last.waitNs),
          preempted: now.preempted - last.preempted,
        },
      },
      'proxy diag',
    );
    last = now;
    loop.reset();
    gc = { n: 0, ms: 0, maxMs: 0, kinds: {} };
  }, every * 1000);
  timer.unref();
  return () => {
    clearInterval(timer);
    loop.disable();
    obs.disconnect();
  };
}

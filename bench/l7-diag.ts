// What bench/l7.ts looks at besides wrk's figures, to tell where the proxy's latency tail comes
// from: the CPU time and run-queue wait of every thread of a process (the kernel's schedstat, by
// thread name), the latency the proxy itself saw (its access log's duration_ms, request start to
// the response's last byte) and the `proxy diag` lines its threads log with WEIR_PROXY_DIAG
// (src/proxy/diag.ts: event-loop delay, GC pauses).
import { readdirSync, readFileSync } from 'node:fs';

/** CPU and run-queue wait (ns) and preemptions by thread name (comm) of a process. */
export type TaskTimes = Map<string, { cpuNs: number; waitNs: number; preempted: number; threads: number }>;

export function taskTimes(pid: number | undefined): TaskTimes {
  const out: TaskTimes = new Map();
  if (pid === undefined) return out;
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim();
      const [cpu, wait] = readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ');
      const status = readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8');
      const pre = Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
      // Thread names: the main thread's is the process title; V8's and libuv's helpers are `node`.
      const key = comm.startsWith('weir-proxy-w') ? comm : comm === 'node' ? 'helpers' : 'main';
      const e = out.get(key) ?? { cpuNs: 0, waitNs: 0, preempted: 0, threads: 0 };
      e.cpuNs += Number(cpu);
      e.waitNs += Number(wait);
      e.preempted += pre;
      e.threads++;
      out.set(key, e);
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

/** after − before, per name (a thread that ended is left out of after: its time is lost). */
export function taskDelta(before: TaskTimes, after: TaskTimes): TaskTimes {
  const out: TaskTimes = new Map();
  for (const [k, a] of after) {
    const b = before.get(k) ?? { cpuNs: 0, waitNs: 0, preempted: 0, threads: 0 };
    out.set(k, {
      cpuNs: a.cpuNs - b.cpuNs,
      waitNs: Math.max(0, a.waitNs - b.waitNs),
      preempted: a.preempted - b.preempted,
      threads: a.threads,
    });
  }
  return out;
}

export const totalCpuNs = (t: TaskTimes) => [...t.values()].reduce((s, e) => s + e.cpuNs, 0);

/** "main 812/95 ms (pre 120), weir-proxy-w1 790/88 ms, helpers 40/9 ms": CPU/run-queue wait. */
export function formatTasks(t: TaskTimes): string {
  return [...t]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(
      ([k, e]) =>
        `${k} ${Math.round(e.cpuNs / 1e6)}/${Math.round(e.waitNs / 1e6)} ms (preempted ${e.preempted})`,
    )
    .join(', ');
}

const pct = (sorted: number[], p: number) =>
  sorted.length ? (sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number) : 0;

export interface Latency {
  n: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  /** Up to three access-log lines of requests that took a second or more. */
  slow: string[];
}

/** Percentiles (ms) of the access log's duration_ms of the requests that ended at or after `sinceMs`. */
export function accessLatency(files: string[], sinceMs: number): Latency {
  const since = new Date(sinceMs).toISOString();
  const ds: number[] = [];
  const slow: string[] = [];
  for (const f of files) {
    let text = '';
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    // Lines are in time order: "time" is pino's, the line's write (the request's end).
    // Requests with no answer (response_code 0: wrk closing its connections at the end) are left out.
    const re = /"time":"([^"]+)".*?"response_code":(\d+).*?"duration_ms":([\d.]+)/g;
    for (let m = re.exec(text); m; m = re.exec(text)) {
      if ((m[1] as string) < since || m[2] === '0') continue;
      const d = Number(m[3]);
      ds.push(d);
      if (d >= 1000 && slow.length < 3) {
        const start = text.lastIndexOf('\n', m.index) + 1;
        const end = text.indexOf('\n', m.index);
        slow.push(text.slice(start, end < 0 ? undefined : end));
      }
    }
  }
  ds.sort((a, b) => a - b);
  return {
    n: ds.length,
    p50: pct(ds, 50),
    p99: pct(ds, 99),
    p999: pct(ds, 99.9),
    max: ds.at(-1) ?? 0,
    slow,
  };
}

export interface DiagSummary {
  /** Per thread: the largest interval p99 and max event-loop delay, GC count, total and longest pause (ms). */
  threads: {
    thread: number;
    loopP99: number;
    loopMax: number;
    gcN: number;
    gcMs: number;
    gcMax: number;
    /** GC count by perf_hooks kind (1 minor, 2 major, 4 incremental, 8 weak callbacks). */
    kinds: Record<string, number>;
  }[];
}

/** The `proxy diag` lines logged in [sinceMs, untilMs] (pino's numeric time), summed per thread. */
export function diagSummary(logFile: string, sinceMs: number, untilMs = Infinity): DiagSummary {
  let text = '';
  try {
    text = readFileSync(logFile, 'utf8');
  } catch {
    return { threads: [] };
  }
  const by = new Map<number, DiagSummary['threads'][number]>();
  for (const line of text.split('\n')) {
    if (!line.includes('"proxy diag"')) continue;
    let o: {
      time: number;
      diag: {
        thread: number;
        loopMs: { p99: number; max: number };
        gc: { n: number; ms: number; maxMs: number; kinds?: Record<string, number> };
      };
    };
    try {
      o = JSON.parse(line) as typeof o;
    } catch {
      continue;
    }
    if (o.time < sinceMs || o.time > untilMs) continue;
    const d = o.diag;
    const e = by.get(d.thread) ?? {
      thread: d.thread,
      loopP99: 0,
      loopMax: 0,
      gcN: 0,
      gcMs: 0,
      gcMax: 0,
      kinds: {},
    };
    for (const [k, n] of Object.entries(d.gc.kinds ?? {})) e.kinds[k] = (e.kinds[k] ?? 0) + n;
    e.loopP99 = Math.max(e.loopP99, d.loopMs.p99);
    e.loopMax = Math.max(e.loopMax, d.loopMs.max);
    e.gcN += d.gc.n;
    e.gcMs += d.gc.ms;
    e.gcMax = Math.max(e.gcMax, d.gc.maxMs);
    by.set(d.thread, e);
  }
  return { threads: [...by.values()].sort((a, b) => a.thread - b.thread) };
}

export function formatDiag(d: DiagSummary): string {
  return d.threads
    .map(
      (t) =>
        `t${t.thread}: loop p99 ≤ ${t.loopP99} ms, max ${t.loopMax} ms; gc ${t.gcN} × = ${Math.round(t.gcMs)} ms, longest ${t.gcMax} ms (kinds ${JSON.stringify(t.kinds)})`,
    )
    .join('; ');
}

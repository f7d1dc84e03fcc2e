// Where the time of a multi-step operation goes: wall time and this process's CPU per step
// (getrusage through process.cpuUsage), plus the CPU of the child processes it waited for
// (/proc/self/stat cutime + cstime, in clock ticks: 10 ms grain, meaningful summed over a batch).
import { readFileSync } from 'node:fs';

export interface StepTime {
  wallMs: number;
  cpuMs: number;
  childMs: number;
}

const tickMs = 10; // USER_HZ is 100 on Linux

function childrenMs(): number {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After the comm: state is field 3, cutime 16 and cstime 17 (1-based) → index 13 and 14 here.
    return (Number(f[13]) + Number(f[14])) * tickMs;
  } catch {
    return 0;
  }
}

export class StepTimes {
  readonly steps = new Map<string, StepTime>();
  private wall = performance.now();
  private cpu = process.cpuUsage();
  private child = childrenMs();

  /** Ends the current step under `name` (times of one name add up) and starts the next. */
  mark(name: string): void {
    const wall = performance.now();
    const cpu = process.cpuUsage();
    const child = childrenMs();
    const s = this.steps.get(name) ?? { wallMs: 0, cpuMs: 0, childMs: 0 };
    s.wallMs += wall - this.wall;
    s.cpuMs += (cpu.user - this.cpu.user + cpu.system - this.cpu.system) / 1000;
    s.childMs += child - this.child;
    this.steps.set(name, s);
    this.wall = wall;
    this.cpu = cpu;
    this.child = child;
  }

  /** Starts the next step here without counting the time since the last mark. */
  skip(): void {
    this.wall = performance.now();
    this.cpu = process.cpuUsage();
    this.child = childrenMs();
  }

  /** Adds another record's steps into this one. */
  add(other: StepTimes): void {
    for (const [name, t] of other.steps) {
      const s = this.steps.get(name) ?? { wallMs: 0, cpuMs: 0, childMs: 0 };
      s.wallMs += t.wallMs;
      s.cpuMs += t.cpuMs;
      s.childMs += t.childMs;
      this.steps.set(name, s);
    }
  }

  /** {step: [wall ms, cpu ms, children's cpu ms]}, rounded to 0.1 ms, for a log line. */
  toJSON(): Record<string, [number, number, number]> {
    const r = (x: number) => Math.round(x * 10) / 10;
    return Object.fromEntries(
      [...this.steps].map(([k, s]) => [k, [r(s.wallMs), r(s.cpuMs), r(s.childMs)]] as const),
    );
  }
}

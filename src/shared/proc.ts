// Processes by pid, as /proc shows them: whether one runs, and the pid a pid file names.
import { readFileSync } from 'node:fs';

/** Whether process `pid` runs: a zombie (killed, not yet reaped by its parent) holds nothing any more. */
export function processRuns(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** The pid in pid file `path` if that process runs; undefined without the file or the process. */
export function runningPid(path: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(path, 'utf8'));
  } catch {
    return undefined;
  }
  return Number.isInteger(pid) && pid > 0 && processRuns(pid) ? pid : undefined;
}

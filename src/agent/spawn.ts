// Starting and stopping a lab's agent. The agent runs in the node's network namespace (entered with
// nsenter: unlike `ip netns exec`, nsenter keeps the root mount namespace, so /sys/fs/bpf pins and
// the cgroup mount stay visible), detached, logging to the lab's log directory.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { WeirError } from '../shared/errors.js';
import { repoRoot } from '../shared/paths.js';
import { privateDirSync, privateFileMode } from '../shared/private-fs.js';
import { processRuns as alive, runningPid } from '../shared/proc.js';
import { AgentClient } from './client.js';
import { settingsArgv, type AgentSettingValues } from './settings.js';
import { agentDir, agentLogFile, agentPidFile, agentSocket } from './paths.js';

export interface StartAgentOptions {
  lab: string;
  /** A node other than the lab's first (its agent has its own directory, socket and log). */
  node?: string;
  nodeNetns: string;
  /** Agent settings (settings.ts), passed on as `weir agent run` flags. */
  settings?: Partial<AgentSettingValues>;
  /** More `weir agent run` options (e.g. ['--flows', '8191']). */
  agentArgs?: string[];
  readyTimeoutMs?: number;
}

export function agentPid(lab: string, node?: string): number | undefined {
  return runningPid(agentPidFile(lab, node));
}

/** The last `Error: …` line the CLI wrote to the agent's log after byte `from` (its fatal error). */
function lastError(lab: string, node: string | undefined, from: number): string | undefined {
  let text: string;
  try {
    text = readFileSync(agentLogFile(lab, node)).subarray(from).toString('utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // no log (yet)
    throw err;
  }
  return text
    .split('\n')
    .filter((l) => l.startsWith('Error: '))
    .pop()
    ?.slice('Error: '.length);
}

async function waitReady(
  lab: string,
  node: string | undefined,
  pid: number,
  timeoutMs: number,
  logFrom: number,
): Promise<void> {
  const client = new AgentClient(agentSocket(lab, node), 2000);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!alive(pid)) {
      const why = lastError(lab, node, logFrom);
      throw new WeirError(
        'ERR_AGENT_START',
        `the agent exited during start${why ? `: ${why}` : ''}; see ${agentLogFile(lab, node)}`,
      );
    }
    try {
      await client.call('GET', '/v1/status');
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new WeirError(
    'ERR_AGENT_START',
    `the agent did not answer within ${timeoutMs} ms; see ${agentLogFile(lab, node)}`,
  );
}

/** Starts the lab's agent unless one is running; resolves when it answers. */
export async function startAgent(opts: StartAgentOptions): Promise<number> {
  const running = agentPid(opts.lab, opts.node);
  if (running !== undefined) return running;
  privateDirSync(agentDir(opts.lab, opts.node));
  privateDirSync(dirname(agentLogFile(opts.lab, opts.node)));
  const out = openSync(agentLogFile(opts.lab, opts.node), 'a', privateFileMode);
  const logFrom = fstatSync(out).size;
  const netnsPath = join('/var/run/netns', opts.nodeNetns);
  if (!existsSync(netnsPath))
    throw new WeirError('ERR_LAB_NOT_UP', `node namespace ${opts.nodeNetns} is missing`);
  const args = [
    `--net=${netnsPath}`,
    process.execPath,
    join(repoRoot, 'dist', 'src', 'cli', 'main.js'),
    'agent',
    'run',
    '--lab',
    opts.lab,
    ...(opts.node ? ['--node', opts.node] : []),
    ...settingsArgv(opts.settings ?? {}),
    ...(opts.agentArgs ?? []),
  ];
  const child = spawn('nsenter', args, { detached: true, stdio: ['ignore', out, out] });
  closeSync(out);
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new WeirError('ERR_AGENT_START', 'could not spawn the agent');
  await waitReady(opts.lab, opts.node, pid, opts.readyTimeoutMs ?? 20_000, logFrom);
  return pid;
}

/** Stops the lab's agent (SIGTERM, then SIGKILL after a grace period). Pins and maps stay. */
export async function stopAgent(lab: string, graceMs = 5000, node?: string): Promise<void> {
  const pid = agentPid(lab, node);
  if (pid === undefined) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!alive(pid)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  process.kill(pid, 'SIGKILL');
}

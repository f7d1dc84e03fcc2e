// The physical limit the pod-to-pod numbers are compared with: one veth pair between two network
// namespaces of the bench lab's own (weir-<lab>-rawa, weir-<lab>-rawb), nothing attached, no
// routing in between. The same servers as the bench pods (iperf3, sockperf; nginx for the
// connection rate) run in rawb; clients run in rawa through `argv`.
import { spawn, type ChildProcess } from 'node:child_process';
import { WeirError } from '../src/shared/errors.js';
import { run } from '../src/shared/exec.js';
import { iperfPort, sockperfPort } from './measurements.js';

export interface RawPair {
  serverIP: string;
  /** Prefix running a command in the client namespace (rawa) / the server namespace (rawb). */
  clientPrefix: string[];
  serverPrefix: string[];
  stop(): Promise<void>;
}

const CLIENT_IP = '10.255.255.1';
const SERVER_IP = '10.255.255.2';

const names = (lab: string) => ({ a: `weir-${lab}-rawa`, b: `weir-${lab}-rawb` });

/** Removes a pair left by an earlier run (its namespaces take the veth with them). */
export async function removeRawPair(lab: string): Promise<void> {
  const n = names(lab);
  for (const ns of [n.a, n.b]) await run(['ip', 'netns', 'del', ns], { check: false });
}

export async function startRawPair(lab: string): Promise<RawPair> {
  const n = names(lab);
  await removeRawPair(lab);
  const servers: ChildProcess[] = [];
  try {
    for (const ns of [n.a, n.b]) await run(['ip', 'netns', 'add', ns]);
    await run(['ip', '-n', n.a, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', n.b]);
    for (const [ns, ip] of [
      [n.a, CLIENT_IP],
      [n.b, SERVER_IP],
    ] as const) {
      await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
      await run(['ip', '-n', ns, 'addr', 'add', `${ip}/30`, 'dev', 'eth0']);
      await run(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
    }
    const serverPrefix = ['ip', 'netns', 'exec', n.b];
    for (const cmd of [
      ['iperf3', '-s', '-p', String(iperfPort)],
      ['sockperf', 'server', '-p', String(sockperfPort)],
    ]) {
      const [bin, ...args] = [...serverPrefix, ...cmd];
      servers.push(spawn(bin as string, args, { stdio: 'ignore' }));
    }
    await new Promise((r) => setTimeout(r, 500));
    for (const s of servers)
      if (s.exitCode !== null)
        throw new WeirError('ERR_BENCH_SERVER', `a raw-pair server exited early (${s.spawnargs.join(' ')})`);
    return {
      serverIP: SERVER_IP,
      clientPrefix: ['ip', 'netns', 'exec', n.a],
      serverPrefix,
      stop: async () => {
        for (const s of servers) s.kill('SIGKILL');
        await removeRawPair(lab);
      },
    };
  } catch (err) {
    for (const s of servers) s.kill('SIGKILL');
    await removeRawPair(lab);
    throw err;
  }
}

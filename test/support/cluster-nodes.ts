// What the tests of a lab of several nodes share: commands asked of one node's agent or run in its
// namespace, a TCP probe, the nodes' addresses, a NodePort that answers once the other node
// published its backend, a device's packet counters in a node's namespace, and the lab's etcd read
// from its underlay namespace.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { run, type RunResult } from '../../src/shared/exec.js';
import { repoRoot } from '../../src/shared/paths.js';
import { cli, ok } from './cli.js';
import { until } from './poll.js';
import { connect } from './service-client.js';

/** The CLI of lab `lab` asked of `node`'s agent (WEIR_NODE); its stdout. */
export async function onNode(lab: string, node: string, args: string[]): Promise<string> {
  process.env.WEIR_NODE = node;
  try {
    return await ok(args, lab);
  } finally {
    delete process.env.WEIR_NODE;
  }
}

/** `argv` run in the network namespace of the lab's node `node` (as root, as the lab's nodes). */
export function inNode(
  lab: string,
  node: string,
  argv: string[],
  opts: { check?: boolean } = {},
): Promise<RunResult> {
  return run(['ip', 'netns', 'exec', `weir-${lab}-${node}`, ...argv], opts);
}

/** `weir lab probe` from pod to pod on 8080/TCP: whether the connection was made. */
export async function probe8080(lab: string, from: string, to: string, timeoutMs: number): Promise<boolean> {
  const r = await cli(
    ['lab', 'probe', '--from', from, '--to', to, '--port', '8080/TCP', '--timeout', String(timeoutMs)],
    lab,
  );
  return r.code === 0;
}

/** The address of the lab's node `name` (`weir node list`). */
export async function nodeIP(lab: string, name: string): Promise<string> {
  const { items } = JSON.parse(await ok(['node', 'list', '-o', 'json'], lab)) as {
    items: { name: string; ip: string }[];
  };
  return items.find((n) => n.name === name)?.ip ?? '';
}

/**
 * Waits until `nodeIP`:`nodePort` answers the lab's external `client` from default/web, the
 * only backend, on node2: the node answers its NodePort once node2 published it.
 */
export function nodePortReady(lab: string, nodeIP: string, nodePort: number): Promise<number> {
  return until(
    'node1 forwards to the backend on node2',
    async () => {
      const [t] = await connect(lab, 'ext:client', 'tcp', nodeIP, nodePort, 1, { timeoutMs: 2000 });
      return /default\/web/.test(t?.body ?? '');
    },
    60_000,
  );
}

/** The MAC address and packet counters of device `dev` in network namespace `ns`. */
export async function linkStats(ns: string, dev: string): Promise<{ mac: string; tx: number; rx: number }> {
  const out = await run(['ip', '-n', ns, '-s', '-j', 'link', 'show', dev]);
  const l = (
    JSON.parse(out.stdout) as {
      address: string;
      stats64: { rx: { packets: number }; tx: { packets: number } };
    }[]
  )[0];
  return { mac: l?.address ?? '', tx: l?.stats64.tx.packets ?? 0, rx: l?.stats64.rx.packets ?? 0 };
}

/**
 * Runs `body` against the lab's etcd, from inside its underlay namespace, with `s` a connected
 * EtcdStore (dist/src/store/etcd.js); `body` prints one line of JSON, returned parsed.
 */
export function labEtcd<T>(lab: string, body: string): T {
  const script = `
    const { EtcdStore } = await import(${JSON.stringify(join(repoRoot, 'dist/src/store/etcd.js'))});
    const s = await EtcdStore.connect({ endpoints: ['http://198.18.0.1:2379'] });
    ${body}
    await s.close();`;
  const r = spawnSync(
    'nsenter',
    [`--net=/var/run/netns/weir-${lab}-underlay`, process.execPath, '--input-type=module', '-e', script],
    { encoding: 'utf8', timeout: 30_000 },
  );
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as T;
}

// Running etcd for weir: a single-member etcd inside a network namespace weir created, listening on
// 127.0.0.1 of that namespace (and on one more address of it when asked: a lab's underlay), never
// in the machine's root namespace, named weir-…, with its data in a directory the caller owns.
// Stopping it (or deleting its namespace) ends it.
import { spawn } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WeirError } from '../shared/errors.js';
import { repoRoot } from '../shared/paths.js';

/** etcd from WEIR_ETCD, the system (Debian etcd-server) or scripts/install-deps.sh's unpacked copy. */
export function etcdBinary(): string {
  const candidates = [
    process.env.WEIR_ETCD,
    '/usr/bin/etcd',
    join(repoRoot, '.deps', 'etcd', 'usr', 'bin', 'etcd'),
  ];
  const found = candidates.find((c): c is string => !!c && existsSync(c));
  if (!found)
    throw new WeirError(
      'ERR_STORE_ETCD_MISSING',
      'no etcd binary (run scripts/install-deps.sh, or set WEIR_ETCD)',
    );
  return found;
}

export interface EtcdServerOptions {
  /** weir-… : the member name, also what `ps` shows. */
  name: string;
  /** The network namespace (ip netns name) it runs in. */
  netns: string;
  dataDir: string;
  clientPort?: number;
  peerPort?: number;
  /** Another address of the namespace to serve clients on (the client URL names it). */
  host?: string;
  /** Outlive this process (a lab's etcd, ended with its namespace). */
  detached?: boolean;
  readyTimeoutMs?: number;
}

export interface EtcdServer {
  pid: number;
  /** The client URL, reachable from inside `netns` only. */
  url: string;
  log: string;
  stop(): Promise<void>;
}

export async function startEtcd(o: EtcdServerOptions): Promise<EtcdServer> {
  if (!o.name.startsWith('weir-'))
    throw new WeirError('ERR_STORE_ETCD_NAME', `etcd member name '${o.name}' must start with weir-`);
  const netnsPath = `/var/run/netns/${o.netns}`;
  if (!existsSync(netnsPath))
    throw new WeirError('ERR_STORE_ETCD_NETNS', `network namespace ${o.netns} does not exist`);
  const port = o.clientPort ?? 2379;
  const client = `http://${o.host ?? '127.0.0.1'}:${port}`;
  const listen = o.host ? `http://127.0.0.1:${port},${client}` : client;
  const peer = `http://127.0.0.1:${o.peerPort ?? 2380}`;
  const log = join(o.dataDir, '..', `${o.name}.log`);
  const fd = openSync(log, 'w');
  const child = spawn(
    'nsenter',
    [
      `--net=${netnsPath}`,
      '--',
      etcdBinary(),
      `--name=${o.name}`,
      `--data-dir=${o.dataDir}`,
      `--listen-client-urls=${listen}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=${o.name}=${peer}`,
      '--initial-cluster-state=new',
      // One apply of many objects is one transaction.
      '--max-txn-ops=10000',
      '--max-request-bytes=33554432',
      '--logger=zap',
      '--log-outputs=stderr',
    ],
    { stdio: ['ignore', fd, fd], detached: o.detached === true },
  );
  closeSync(fd);
  if (o.detached) child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new WeirError('ERR_STORE_ETCD_START', 'could not start etcd');
  let exited = false;
  child.on('exit', () => (exited = true));
  const stop = async () => {
    if (exited) return;
    child.kill('SIGTERM');
    const deadline = Date.now() + 5000;
    while (!exited && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (!exited) child.kill('SIGKILL');
  };
  const deadline = Date.now() + (o.readyTimeoutMs ?? 20_000);
  for (;;) {
    const text = readFileSync(log, 'utf8');
    // Logged once the client listener serves (the member has joined its one-member cluster by then).
    if (text.includes('serving client traffic')) break;
    if (exited || Date.now() > deadline) {
      await stop();
      throw new WeirError(
        'ERR_STORE_ETCD_START',
        `etcd ${o.name} did not become ready (log ${log}):\n${text.split('\n').slice(-6).join('\n')}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { pid, url: client, log, stop };
}

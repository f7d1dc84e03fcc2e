// The agent's side of its node's proxy (`weir proxy`, src/proxy): one per node, as Cilium's, in the
// node's network namespace. Started on demand (the first time a policy needs L7), supervised,
// restarted with a bounded backoff when it dies (and given the current snapshot again before it
// listens), adopted by a restarted agent (pid file + admin socket) instead of being replaced, never
// stopped by the agent itself: it outlives the agent, and `weir lab down` ends it. Snapshots are
// versioned; the proxy acknowledges the version it runs. Its L7 records stream back into the
// agent's flows.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { EndpointL7Policy } from '../policy/l7/types.js';
import type { ProxyStatus } from '../proxy/admin.js';
import type { GatewaySnapshot } from '../proxy/gateway/server.js';
import { ProxyClient } from '../proxy/client.js';
import { proxyLogFile, proxyPidFile, proxySocket, proxyTitle } from '../proxy/paths.js';
import type { ListenerPorts } from '../proxy/server.js';
import type { TunnelConfig } from '../proxy/tunnel.js';
import { isCode, WeirError } from '../shared/errors.js';
import { repoRoot } from '../shared/paths.js';
import { privateDirSync, privateFileMode } from '../shared/private-fs.js';
import { processRuns as alive, runningPid } from '../shared/proc.js';
import { PROXY_SEMI_SPACE_MB } from '../proxy/workers.js';

export interface ProxyManagerOptions {
  lab: string;
  /** The lab's node when it is not the first (its own paths and title); absent: the first node. */
  node?: string;
  /** The node's network namespace: the proxy runs there (never in the root namespace). */
  nodeNetns: string;
  /** The pinned weir_ipcache the proxy reads identities from. */
  ipcachePin: string;
  ports: ListenerPorts;
  log: Logger;
  /** A line of the proxy's record stream (src/proxy/records.ts parseRecordLine). */
  onRecordLine(line: string): void;
  /** Proxy threads serving HTTP (0 or absent: one per CPU). */
  workers?: number;
  /** How long a start may take until the proxy answers (default 15 s). */
  startTimeoutMs?: number;
}

/** What `weir proxy status` shows: the agent's view plus the proxy's own (when it answers). */
export interface ProxyManagerStatus {
  /** The agent runs (or adopted) a proxy: it is needed since some policy had L7 rules. */
  wanted: boolean;
  running: boolean;
  pid?: number;
  /** The version the agent last sent / the proxy acknowledged. */
  desiredVersion: number;
  ackedVersion?: number;
  /** Endpoints with L7 ports in the desired snapshot. */
  endpoints: number;
  ports: ListenerPorts;
  restarts: number;
  lastError?: string;
  proxy?: ProxyStatus;
}

/**
 * WEIR_PROXY_NODE_ARGS (the agent's environment, space-separated): extra node/V8 flags for the
 * proxy process, after the built-in ones (a later flag wins). For measurements (bench/l7.ts
 * variants, docs/proxy.md "Latency tail"); only flags (each starting with `--`) are taken.
 */
export function proxyNodeArgs(env = process.env): string[] {
  return (env.WEIR_PROXY_NODE_ARGS ?? '').split(/\s+/).filter((a) => a.startsWith('--'));
}

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30_000;
/** A proxy that ran this long has recovered: the next restart starts the backoff anew. */
const HEALTHY_AFTER_MS = 30_000;
const PUSH_TIMEOUT_MS = 10_000;

/** The listener ports of a proxy port range "MIN-MAX": the first three (ERR_AGENT_CONFIG if invalid). */
export function proxyPortsOf(range: string): ListenerPorts {
  const m = /^(\d+)-(\d+)$/.exec(range);
  const min = Number(m?.[1]);
  const max = Number(m?.[2]);
  if (!m || min < 1024 || max > 65535 || max - min < 2)
    throw new WeirError(
      'ERR_AGENT_CONFIG',
      `proxy port range '${range}' is not MIN-MAX with 1024 <= MIN < MIN+2 <= MAX <= 65535 (e.g. 10000-20000)`,
      { location: { field: '--proxy-port-range' } },
    );
  return { ingress: min, egress: min + 1, dns: min + 2 };
}

/** The title in a process's command line (process.title, then NULs), or undefined. */
function titleOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0];
  } catch {
    return undefined;
  }
}

/** The pid of the proxy of a lab's node (`node` undefined: the first node's), if one runs. */
export function proxyPid(lab: string, node?: string): number | undefined {
  const pid = runningPid(proxyPidFile(lab, node));
  // Its title names the lab and node (a pid file outlives its process; pids are reused).
  return pid !== undefined && titleOf(pid) === proxyTitle(lab, node) ? pid : undefined;
}

/**
 * Every running proxy of a lab, whichever node's: the processes whose title is the lab's proxy
 * title (the first node's) or it followed by a node name, found in /proc, so that a proxy whose
 * pid file or lab configuration is gone (a crashed run) is found too.
 */
export function labProxyPids(lab: string): number[] {
  const title = proxyTitle(lab);
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    const t = titleOf(pid);
    if (
      t === undefined ||
      !(t === title || (t.startsWith(`${title} `) && !t.slice(title.length + 1).includes(' ')))
    )
      continue;
    if (alive(pid)) pids.push(pid);
  }
  return pids;
}

/** Ends every proxy of a lab, all nodes' (SIGTERM, then SIGKILL after `graceMs`). For `weir lab down`. */
export async function stopProxies(lab: string, graceMs = 3000): Promise<void> {
  await Promise.all(labProxyPids(lab).map((pid) => stopPid(pid, graceMs)));
}

async function stopPid(pid: number, graceMs: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!alive(pid)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone meanwhile
  }
}

export class ProxyManager {
  readonly client: ProxyClient;
  readonly #o: ProxyManagerOptions;
  #wanted = false;
  #pid: number | undefined;
  #child: ChildProcess | undefined;
  #startedAt = 0;
  #version = 0;
  #acked: number | undefined;
  #desired: EndpointL7Policy[] = [];
  #desiredText = '[]';
  #ackedText: string | undefined;
  #restarts = 0;
  #backoffMs = BACKOFF_MIN_MS;
  #lastError: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #restarting = false;
  #chain: Promise<void> = Promise.resolve();
  #records: AbortController | undefined;
  #closed = false;
  #gateway: Omit<GatewaySnapshot, 'version'> = { ports: [], mesh: [], endpoints: {}, pods: {} };
  #gatewayText = JSON.stringify(this.#gateway);
  #gatewayAcked: string | undefined;
  #gatewayVersion = 0;
  #tunnel: Omit<TunnelConfig, 'version'> | undefined;
  #tunnelText: string | undefined;
  #tunnelAcked: string | undefined;
  #tunnelVersion = 0;

  constructor(o: ProxyManagerOptions) {
    this.#o = o;
    this.client = new ProxyClient(proxySocket(o.lab, o.node));
  }

  /** At agent start: takes over a proxy a previous agent started, if one runs and answers. */
  async adopt(): Promise<boolean> {
    const pid = proxyPid(this.#o.lab, this.#o.node);
    if (pid === undefined) return false;
    try {
      const s = await this.client.status();
      this.#pid = pid;
      this.#startedAt = Date.now();
      this.#wanted = true;
      this.#acked = s.version ?? undefined;
      this.#version = Math.max(this.#version, s.version ?? 0);
      this.#o.log.info({ pid, version: s.version }, 'adopted the running proxy');
      this.#supervise();
      return true;
    } catch (err) {
      this.#o.log.warn({ err, pid }, 'a proxy runs but does not answer: it will be replaced');
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
      return false;
    }
  }

  /**
   * The L7 policy the proxy must run from now on. Starts the proxy the first time one is needed;
   * resolves once the proxy acknowledged it (or the attempt failed: the error is kept and
   * retried on the next restart; redirected connections fail closed meanwhile).
   */
  async update(endpoints: EndpointL7Policy[]): Promise<void> {
    this.#desired = endpoints;
    this.#desiredText = JSON.stringify(endpoints);
    if (!this.#wanted && endpoints.length === 0) return;
    this.#wanted = true;
    await this.#sync();
  }

  /**
   * The Gateway tables the proxy must serve from now on (north-south listeners on the Gateways'
   * addresses). Starts the proxy the first time a Gateway needs it.
   */
  async updateGateway(snapshot: Omit<GatewaySnapshot, 'version'>): Promise<void> {
    this.#gateway = snapshot;
    this.#gatewayText = JSON.stringify(snapshot);
    if (!this.#wanted && snapshot.ports.length === 0 && snapshot.mesh.length === 0) return;
    this.#wanted = true;
    await this.#sync();
  }

  /**
   * --encryption mtls: the tunnels' SVIDs (this node's identities), CA and ports. Starts the proxy
   * the first time; pushed again whenever it changes (renewals) and after every restart.
   */
  async updateTunnel(cfg: Omit<TunnelConfig, 'version'>): Promise<void> {
    const text = JSON.stringify(cfg);
    if (
      text === this.#tunnelText &&
      this.#tunnelAcked === text &&
      this.#pid !== undefined &&
      alive(this.#pid)
    )
      return;
    this.#tunnel = cfg;
    this.#tunnelText = text;
    this.#wanted = true;
    await this.#sync();
  }

  /** Brings the proxy to the desired snapshot (starting it if needed); one at a time. */
  #sync(): Promise<void> {
    const next = this.#chain.then(async () => {
      if (this.#closed) return;
      const running = this.#pid !== undefined && alive(this.#pid);
      if (
        running &&
        this.#ackedText === this.#desiredText &&
        this.#gatewayAcked === this.#gatewayText &&
        this.#tunnelAcked === this.#tunnelText
      )
        return;
      try {
        if (running) await this.#push();
        else await this.#start();
        this.#lastError = undefined;
      } catch (err) {
        this.#lastError = (err as Error).message;
        this.#o.log.error({ err }, 'the proxy did not take the snapshot');
      }
    });
    this.#chain = next.catch(() => undefined);
    return next;
  }

  async status(): Promise<ProxyManagerStatus> {
    const running = this.#pid !== undefined && alive(this.#pid);
    let proxy: ProxyStatus | undefined;
    if (running)
      try {
        proxy = await this.client.status();
      } catch {
        proxy = undefined;
      }
    return {
      wanted: this.#wanted,
      running,
      ...(this.#pid !== undefined && running ? { pid: this.#pid } : {}),
      desiredVersion: this.#version,
      ...(this.#acked !== undefined ? { ackedVersion: this.#acked } : {}),
      endpoints: this.#desired.length,
      ports: this.#o.ports,
      restarts: this.#restarts,
      ...(this.#lastError ? { lastError: this.#lastError } : {}),
      ...(proxy ? { proxy } : {}),
    };
  }

  /**
   * The DNS proxy forgets what it knew the FQDN cache holds (entries went before their expiry:
   * a clean, an agent restart). A proxy that does not run knows nothing; one that does not answer
   * is logged (it restarts empty when replaced).
   */
  async forgetFqdn(): Promise<void> {
    if (this.#pid === undefined || !alive(this.#pid)) return;
    try {
      await this.client.forgetFqdn();
    } catch (err) {
      this.#o.log.error({ err }, 'the DNS proxy did not forget the FQDN cache');
    }
  }

  /** The proxy's metrics (Prometheus text), or '' when it does not run or answer. */
  async metricsText(): Promise<string> {
    if (this.#pid === undefined || !alive(this.#pid)) return '';
    try {
      return await this.client.metrics();
    } catch {
      return '';
    }
  }

  /** Stops supervising (agent shutdown). The proxy keeps running for the next agent. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#records?.abort();
  }

  async #start(): Promise<void> {
    const o = this.#o;
    const netnsPath = join('/var/run/netns', o.nodeNetns);
    if (!existsSync(netnsPath))
      throw new WeirError('ERR_PROXY_START', `node namespace ${o.nodeNetns} is missing`);
    privateDirSync(dirname(proxyLogFile(o.lab, o.node)));
    const out = openSync(proxyLogFile(o.lab, o.node), 'a', privateFileMode);
    let child: ChildProcess;
    try {
      child = spawn(
        'nsenter',
        [
          `--net=${netnsPath}`,
          process.execPath,
          `--max-semi-space-size=${PROXY_SEMI_SPACE_MB}`,
          ...proxyNodeArgs(),
          join(repoRoot, 'dist', 'src', 'cli', 'main.js'),
          'proxy',
          'run',
          '--lab',
          o.lab,
          ...(o.node ? ['--node', o.node] : []),
          '--ipcache',
          o.ipcachePin,
          ...(o.workers ? ['--workers', String(o.workers)] : []),
        ],
        { detached: true, stdio: ['ignore', out, out] },
      );
    } finally {
      closeSync(out);
    }
    child.unref();
    if (child.pid === undefined) throw new WeirError('ERR_PROXY_START', 'could not spawn the proxy');
    this.#child = child;
    this.#pid = child.pid;
    this.#startedAt = Date.now();
    this.#acked = undefined;
    this.#gatewayAcked = undefined;
    this.#tunnelAcked = undefined;
    this.#ackedText = undefined;
    child.once('exit', () => {
      if (this.#child === child) this.#check();
    });
    o.log.info({ pid: child.pid }, 'proxy started');
    this.#supervise();
    await this.#waitReady(child.pid, o.startTimeoutMs ?? 15_000);
    await this.#push();
    this.#follow();
  }

  async #waitReady(pid: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!alive(pid))
        throw new WeirError(
          'ERR_PROXY_START',
          `the proxy exited during start; see ${proxyLogFile(this.#o.lab, this.#o.node)}`,
        );
      try {
        await this.client.status();
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    throw new WeirError(
      'ERR_PROXY_START',
      `the proxy did not answer within ${timeoutMs} ms; see ${proxyLogFile(this.#o.lab, this.#o.node)}`,
    );
  }

  async #push(): Promise<void> {
    const text = this.#desiredText;
    const endpoints = this.#desired;
    for (let attempt = 0; attempt < 2; attempt++) {
      const version = ++this.#version;
      try {
        const acked = await withTimeout(
          this.client.push({ version, endpoints }, this.#o.ports),
          PUSH_TIMEOUT_MS,
        );
        this.#acked = acked;
        this.#ackedText = text;
        this.#o.log.info({ version: acked, endpoints: endpoints.length }, 'proxy runs the snapshot');
        await this.#pushGateway();
        await this.#pushTunnel();
        return;
      } catch (err) {
        // A proxy that ran a newer version (an earlier agent's): continue after it.
        if (isCode(err, 'ERR_PROXY_SNAPSHOT_STALE') && attempt === 0) {
          this.#version = Math.max(this.#version, Number(err.details.version) || 0);
          continue;
        }
        throw err;
      }
    }
  }

  /** The Gateway tables, after the L7 snapshot; versions grow across agent restarts (wall clock). */
  async #pushGateway(): Promise<void> {
    const text = this.#gatewayText;
    this.#gatewayVersion = Math.max(this.#gatewayVersion + 1, Date.now());
    const r = await withTimeout(
      this.client.pushGateway({ version: this.#gatewayVersion, ...this.#gateway }),
      PUSH_TIMEOUT_MS,
    );
    this.#gatewayAcked = text;
    this.#o.log.info({ version: r.version, listening: r.listening }, 'proxy runs the gateway tables');
  }

  /** The tunnel config, after the gateway tables; versions grow across agent restarts (wall clock). */
  async #pushTunnel(): Promise<void> {
    const text = this.#tunnelText;
    if (!this.#tunnel || text === undefined) return;
    this.#tunnelVersion = Math.max(this.#tunnelVersion + 1, Date.now());
    const r = await withTimeout(
      this.client.pushTunnel({ version: this.#tunnelVersion, ...this.#tunnel }),
      PUSH_TIMEOUT_MS,
    );
    this.#tunnelAcked = text;
    this.#o.log.info(
      { version: r.version, svids: this.#tunnel.svids.length },
      'proxy runs the tunnel config',
    );
  }

  /** Streams the proxy's L7 records into the agent until it stops; reconnects while it runs. */
  #follow(): void {
    if (this.#records || this.#closed) return;
    const ac = new AbortController();
    this.#records = ac;
    const loop = async () => {
      while (!ac.signal.aborted) {
        try {
          await this.client.records((line) => this.#o.onRecordLine(line), ac.signal);
        } catch {
          // not reachable (restarting): try again shortly
        }
        if (!ac.signal.aborted) await new Promise((r) => setTimeout(r, 500));
      }
    };
    void loop();
  }

  #supervise(): void {
    this.#follow();
    if (this.#timer || this.#closed) return;
    this.#timer = setInterval(() => this.#check(), 1000);
    this.#timer.unref();
  }

  /** Restarts a dead proxy (bounded backoff) and gives it the current snapshot. */
  #check(): void {
    if (this.#closed || !this.#wanted || this.#restarting) return;
    if (this.#pid !== undefined && alive(this.#pid)) {
      if (Date.now() - this.#startedAt > HEALTHY_AFTER_MS) this.#backoffMs = BACKOFF_MIN_MS;
      return;
    }
    const delay = this.#backoffMs;
    this.#backoffMs = Math.min(this.#backoffMs * 2, BACKOFF_MAX_MS);
    this.#o.log.warn({ pid: this.#pid, delayMs: delay }, 'the proxy is gone: restarting it');
    this.#pid = undefined;
    this.#acked = undefined;
    this.#gatewayAcked = undefined;
    this.#tunnelAcked = undefined;
    this.#ackedText = undefined;
    this.#restarting = true;
    setTimeout(() => {
      this.#restarts++;
      void this.#sync().finally(() => {
        this.#restarting = false;
      });
    }, delay).unref();
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new WeirError('ERR_PROXY_TIMEOUT', `no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

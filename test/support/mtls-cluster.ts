// What the two-node mutual-authentication tests share (tunnel and native routing): the nodes'
// underlay addresses, the policy requiring authentication from client to server on 8080, commands
// asked of one node's agent, and the lab itself (AuthLab: up, identities, the first handshake,
// the pairs each node holds, down); and, for the tests of encryption between nodes
// (`--encryption mtls`), the lab itself (EncryptedLab: up, pods and policies, identities, down)
// with what they ask of it (tunnel status, flows, a GET with a marker, an underlay capture, a
// request that must travel in the tunnel, a node's proxy gone); and the start of the scripts that
// dial node2's tunnel listener as a rogue would.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuthStatus } from '../../src/agent/auth.js';
import { agentDir, agentPidFile } from '../../src/agent/paths.js';
import { proxyPid, type ProxyManagerStatus } from '../../src/agent/proxy-manager.js';
import type { Flow } from '../../src/observe/flow.js';
import { authNodeId } from '../../src/auth/node-id.js';
import type { TunnelStatus } from '../../src/proxy/tunnel.js';
import { repoRoot } from '../../src/shared/paths.js';
import { captureAll } from './capture.js';
import { cli, lastJson, ok } from './cli.js';
import { onNode, probe8080 } from './cluster-nodes.js';
import { crossNodePods, serverFromClient } from './cluster-pods.js';

export const NODE1_UL = '198.18.0.11';
export const NODE2_UL = '198.18.0.12';

export const authRequiredPolicy = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: server-auth }
spec:
  endpointSelector: { matchLabels: { app: server } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: client } }]
      toPorts: [{ ports: [{ port: "8080", protocol: TCP }] }]
      authentication: { mode: required }
`;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Commands of lab `lab` asked of one node's agent, and a TCP probe to 8080. */
export function nodeCommands(lab: string) {
  const on = (node: string, args: string[]) => onNode(lab, node, args);
  return {
    onNode: on,
    authOf: async (node: string) => JSON.parse(await on(node, ['auth', 'list', '-o', 'json'])) as AuthStatus,
    probe: (from: string, to: string): Promise<boolean> => probe8080(lab, from, to, 800),
  };
}

/**
 * Whether flow `f` is a policy verdict of a connection from `from` (an identity, or a pod's name)
 * to the server pod, marked encrypted (it came through, or went into, the mTLS tunnel).
 */
export const encryptedToServer = (f: Flow, from: number | string): boolean =>
  f.weir.type === 'policy-verdict' &&
  (typeof from === 'number' ? f.source.identity === from : f.source.pod_name === from) &&
  f.destination.pod_name === 'server' &&
  f.IP?.encrypted === true;

/**
 * The start of a script (ESM) run in a node's namespace to dial node2's tunnel listener as a rogue
 * would: `dial(svid, servername, authority, forwardedFor, tls)` opens an HTTP/2 CONNECT to
 * `authority` with header `forwarded: for="<forwardedFor>"` over TLS 1.3 presenting `svid`
 * ({certPem, keyPem}) with the TLS options `tls`, and resolves with what came of it: 'status N',
 * 'error: …', 'closed', 'stream error: …' or 'timeout' (10 s).
 */
export const tunnelDialer = `
import http2 from 'node:http2';
const dial = (svid, servername, authority, forwardedFor, tls) => new Promise((resolve) => {
  const done = (v) => { resolve(v); session.destroy(); };
  const session = http2.connect('https://${NODE2_UL}:15008', {
    servername, cert: svid.certPem, key: svid.keyPem, minVersion: 'TLSv1.3', ...tls,
  });
  session.on('error', (e) => done('error: ' + e.message));
  session.on('close', () => done('closed'));
  const st = session.request({ ':method': 'CONNECT', ':authority': authority, forwarded: 'for="' + forwardedFor + '"' });
  st.on('response', (h) => done('status ' + h[':status']));
  st.on('error', (e) => done('stream error: ' + e.message));
  setTimeout(() => done('timeout'), 10000);
});
`;

/**
 * For a script of tunnelDialer run as root: `real`, lab `lab`'s CA (its key file is root's), and
 * `trustLab`, the TLS options that trust the lab's CA and not the server's name (as the nodes do).
 */
export const labCa = (lab: string) => `
import { readFileSync } from 'node:fs';
import { CertificateAuthority } from '${repoRoot}/dist/src/auth/ca.js';
const real = await CertificateAuthority.open('${join(agentDir(lab), 'ca')}');
const trustLab = { ca: readFileSync('${join(agentDir(lab), 'ca', 'ca.crt')}', 'utf8'), checkServerIdentity: () => undefined };
`;

/**
 * A lab of two nodes (mutual authentication, no encryption; `upArgs` more for `weir lab up`)
 * running crossNodePods under authRequiredPolicy: up() brings it up (removing one left over) and
 * fills in dir, ids and serverIp; down() removes it.
 */
export class AuthLab {
  /** The scratch directory (scripts run in pods or nodes). */
  dir = '';
  /** Each pod's identity, by pod name. */
  readonly ids: Record<string, number> = {};
  serverIp = '';
  readonly onNode: (node: string, args: string[]) => Promise<string>;
  readonly authOf: (node: string) => Promise<AuthStatus>;
  readonly probe: (from: string, to: string) => Promise<boolean>;

  constructor(
    readonly name: string,
    private readonly upArgs: string[] = [],
  ) {
    ({ onNode: this.onNode, authOf: this.authOf, probe: this.probe } = nodeCommands(name));
  }

  up = async (): Promise<void> => {
    const lab = this.name;
    this.dir = await mkdtemp(join(tmpdir(), `weir-${lab}-`));
    await writeFile(join(this.dir, 'pods.yaml'), crossNodePods);
    await writeFile(join(this.dir, 'policy.yaml'), authRequiredPolicy);
    await cli(['lab', 'down'], lab);
    await ok(['lab', 'up', '--nodes', '2', ...this.upArgs, '--no-cluster-dns'], lab, 240_000);
    await ok(['apply', '-f', join(this.dir, 'pods.yaml')], lab);
    await ok(['apply', '-f', join(this.dir, 'policy.yaml')], lab);
    for (const node of ['node1', 'node2']) {
      const eps = JSON.parse(await this.onNode(node, ['endpoint', 'list', '-o', 'json'])) as {
        pod: string;
        identity: number;
        ips: string[];
      }[];
      for (const e of eps) {
        this.ids[e.pod] = e.identity;
        if (e.pod === 'server') this.serverIp = e.ips[0] ?? '';
      }
    }
    const { ids } = this;
    assert.ok(ids.client && ids.server && ids.other && this.serverIp, JSON.stringify(ids));
  };

  down = async (): Promise<void> => {
    await cli(['lab', 'down'], this.name);
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  };

  /**
   * Asserts that client → server is dropped first and connects once the nodes handshook (a probe
   * every 250 ms, 30 at most); says when in a diagnostic of `t`.
   */
  handshakeFirst = async (t: { diagnostic: (m: string) => void }): Promise<void> => {
    const t0 = Date.now();
    assert.equal(await this.probe('default/client', 'default/server'), false, 'the first attempt is dropped');
    let tries = 1;
    let connected = false;
    while (!connected && tries < 30) {
      await sleep(250);
      tries++;
      connected = await this.probe('default/client', 'default/server');
    }
    assert.ok(connected, `connected after ${tries} attempts`);
    t.diagnostic(`connected at attempt ${tries}, ${Date.now() - t0} ms after the first SYN`);
  };

  /**
   * Asserts that each node holds the pair client → server with the other node (its node id in
   * the key; node2 dialled, node1's listener accepted) and that `weir auth list` names it.
   */
  assertPairs = async (): Promise<void> => {
    const { ids } = this;
    const s2 = await this.authOf('node2');
    const p2 = s2.pairs.find((p) => p.srcIdentity === ids.client && p.dstIdentity === ids.server);
    assert.ok(p2, `node2's pairs: ${JSON.stringify(s2.pairs)}`);
    assert.equal(p2.remoteNodeId, authNodeId(NODE1_UL));
    assert.equal(p2.node, 'node1');
    assert.ok(s2.handshakes.ok >= 1, 'node2 dialled');
    const s1 = await this.authOf('node1');
    const p1 = s1.pairs.find((p) => p.srcIdentity === ids.client && p.dstIdentity === ids.server);
    assert.ok(p1, `node1's pairs: ${JSON.stringify(s1.pairs)}`);
    assert.equal(p1.remoteNodeId, authNodeId(NODE2_UL));
    assert.equal(p1.node, 'node2');
    assert.ok(s1.counters.accepted >= 1, "node1's listener accepted node2");
    assert.match(
      await this.onNode('node1', ['auth', 'list']),
      new RegExp(`${ids.client}\\s+${ids.server}\\s+node2`),
    );
    assert.match(
      await this.onNode('node2', ['auth', 'list']),
      new RegExp(`${ids.client}\\s+${ids.server}\\s+node1`),
    );
  };
}

/** What trafficScript printed. */
export interface TrafficResult {
  longLived: number;
  longFailed: number;
  fresh: number;
  freshFailed: number;
  errors: string[];
}

/**
 * A script to run in the client pod: one long-lived connection to `long`:8080 echoing a line every
 * 200 ms, and a new connection every 250 ms to each of `fresh` in turn, for `seconds`; every
 * failure counted (a new connection's named in `errors`). Prints a TrafficResult.
 */
export const trafficScript = (long: string, fresh: string[], seconds: number) => `
import { connect } from 'node:net';
const end = Date.now() + ${seconds * 1000};
const hosts = ${JSON.stringify(fresh)};
const res = { longLived: 0, longFailed: 0, fresh: 0, freshFailed: 0, errors: [] };
const once = (host) => new Promise((resolve) => {
  const s = connect({ host, port: 8080 });
  let got = '';
  const t = setTimeout(() => { s.destroy(); resolve(false); }, 1500);
  s.on('connect', () => s.write('hello\\n'));
  s.on('data', (d) => { got += d; if (got.includes('hello')) { clearTimeout(t); s.end(); resolve(true); } });
  s.on('error', () => { clearTimeout(t); resolve(false); });
});
const long = connect({ host: '${long}', port: 8080 });
let pending = 0;
long.on('data', (d) => { const n = String(d).split('ping').length - 1; res.longLived += n; pending -= n; });
long.on('error', (e) => res.errors.push(String(e)));
await new Promise((r) => long.once('connect', r));
const ticker = setInterval(() => {
  if (pending > 5) res.longFailed++;
  pending++;
  long.write('ping\\n');
}, 200);
let i = 0;
while (Date.now() < end) {
  const host = hosts[i++ % hosts.length];
  if (await once(host)) res.fresh++; else { res.freshFailed++; res.errors.push('fresh ' + host + ' at ' + new Date().toISOString()); }
  await new Promise((r) => setTimeout(r, 250));
}
clearInterval(ticker);
await new Promise((r) => setTimeout(r, 500));
if (long.destroyed) res.errors.push('the long-lived connection closed');
long.destroy();
console.log(JSON.stringify(res));
`;

// Run in a pod: sends `bytes` of the marker over one TCP connection to the lab server (which
// echoes what is not HTTP), half-closes, and counts what comes back.
const streamScript = `
import net from 'node:net';
const [ip, port, total, marker] = process.argv.slice(2);
const chunk = Buffer.alloc(16384, marker + ' ');
let sent = 0, got = 0;
const out = (error) => { console.log(JSON.stringify({ sent, got, ...(error ? { error } : {}) })); process.exit(0); };
const s = net.connect({ host: ip, port: Number(port), allowHalfOpen: true }, () => {
  const write = () => {
    while (sent < Number(total)) {
      sent += chunk.length;
      if (!s.write(chunk)) return void s.once('drain', write);
    }
    s.end();
  };
  write();
});
s.on('data', (d) => (got += d.length));
s.on('end', () => out());
s.on('error', (e) => out(e.message));
setTimeout(() => out('timeout'), 60000);
`;

/** What stream() sent and got back, and why it stopped short. */
export interface StreamResult {
  sent: number;
  got: number;
  error?: string;
}

/** The identities of the pods of crossNodePods. */
export interface Ids {
  client: number;
  other: number;
  server: number;
}

export interface EncryptedLabOptions {
  /** The marker get() puts in its request path and capture() looks for on the underlay. */
  marker: string;
  /** The policies applied with crossNodePods (default: serverFromClient). */
  policies?: string;
  /** A lab file for `weir lab up -f` (default: `--nodes 2`). */
  labYaml?: string;
  /** Files written to the scratch directory `dir` before the lab comes up. */
  files?: Record<string, string>;
}

/**
 * A lab of two nodes with `--encryption mtls` running crossNodePods under `policies`: up() brings
 * it up (removing one left over) and fills in dir, ips, ips6 and ids; down() removes it.
 */
export class EncryptedLab {
  /** The scratch directory (files, scripts run in pods). */
  dir = '';
  /** Each pod's IPv4 address, and its IPv6 address in a dual-stack lab, by pod name. */
  ips: Record<string, string> = {};
  ips6: Record<string, string> = {};
  ids: Ids = { client: 0, other: 0, server: 0 };
  readonly onNode: (node: string, args: string[]) => Promise<string>;
  readonly authOf: (node: string) => Promise<AuthStatus>;

  constructor(
    readonly name: string,
    private readonly o: EncryptedLabOptions,
  ) {
    ({ onNode: this.onNode, authOf: this.authOf } = nodeCommands(name));
  }

  up = async (): Promise<void> => {
    const lab = this.name;
    this.dir = await mkdtemp(join(tmpdir(), `weir-${lab}-`));
    await writeFile(join(this.dir, 'stream.mjs'), streamScript);
    await writeFile(join(this.dir, 'all.yaml'), `${crossNodePods}---${this.o.policies ?? serverFromClient}`);
    for (const [file, text] of Object.entries(this.o.files ?? {}))
      await writeFile(join(this.dir, file), text);
    await cli(['lab', 'down'], lab);
    let nodes = ['--nodes', '2'];
    if (this.o.labYaml !== undefined) {
      await writeFile(join(this.dir, 'lab.yaml'), this.o.labYaml);
      nodes = ['-f', join(this.dir, 'lab.yaml')];
    }
    await ok(['lab', 'up', ...nodes, '--lab', lab, '--encryption', 'mtls'], lab, 300_000);
    await ok(['apply', '-f', join(this.dir, 'all.yaml')], lab);
    const pods = JSON.parse(await ok(['get', 'pods', '-o', 'json'], lab)) as {
      items: { metadata: { name: string }; status: { podIP: string; podIPs?: { ip: string }[] } }[];
    };
    for (const p of pods.items) {
      this.ips[p.metadata.name] = p.status.podIP;
      this.ips6[p.metadata.name] = p.status.podIPs?.find((a) => a.ip.includes(':'))?.ip ?? '';
    }
    const eps: { pod: string; identity: number }[] = [];
    for (const node of ['node1', 'node2'])
      eps.push(...(JSON.parse(await this.onNode(node, ['endpoint', 'list', '-o', 'json'])) as typeof eps));
    const id = (pod: string) => eps.find((e) => e.pod === pod || e.pod.endsWith(`/${pod}`))?.identity ?? 0;
    this.ids = { client: id('client'), other: id('other'), server: id('server') };
    assert.ok(
      this.ids.client && this.ids.other && this.ids.server,
      `identities: ${JSON.stringify(this.ids)}`,
    );
  };

  down = async (): Promise<void> => {
    await cli(['lab', 'down'], this.name);
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  };

  /** The tunnel status of a node's proxy. */
  tunnelStatus = async (node: string): Promise<TunnelStatus | undefined> => {
    const s = JSON.parse(
      await ok(['proxy', 'status', '--node', node, '-o', 'json'], this.name),
    ) as ProxyManagerStatus;
    return s.proxy?.tunnel;
  };

  /** A node's last 2000 flows. */
  flows = async (node: string): Promise<Flow[]> =>
    (await this.onNode(node, ['observe', '--last', '2000', '-o', 'json']))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Flow);

  /** An HTTP GET of `/<prefix><marker>` from a pod to `ip`:8080 (IPv4 or IPv6): body and status code. */
  get = async (from: string, ip: string, timeoutS = 10, prefix = ''): Promise<string> => {
    const host = ip.includes(':') ? `[${ip}]` : ip;
    const url = `http://${host}:8080/${prefix}${this.o.marker}`;
    const r = await cli(
      ['lab', 'exec', from, '--', 'curl', '-s', '-g', '-m', String(timeoutS), '-w', ' %{http_code}', url],
      this.name,
    );
    return r.stdout.trim();
  };

  /** `bytes` of the marker sent from a pod over one TCP connection to `ip`:8080, echoed back. */
  stream = async (from: string, ip: string, bytes: number): Promise<StreamResult> => {
    const out = await ok(
      [
        'lab',
        'exec',
        from,
        '--',
        process.execPath,
        join(this.dir, 'stream.mjs'),
        ip,
        '8080',
        String(bytes),
        this.o.marker,
      ],
      this.name,
    );
    return lastJson<StreamResult>(out);
  };

  /** A capture of every device of the underlay namespace until stop(). */
  capture = () => captureAll(`weir-${this.name}-underlay`, this.o.marker);

  /**
   * Runs `fn` under an underlay capture (300 ms more for the last frames) and asserts what `what`
   * sent travelled in the tunnel: frames of TCP 15008, none holding the marker, none in plain VXLAN.
   */
  inTunnel = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    const cap = await this.capture();
    let out: T | undefined;
    try {
      out = await fn();
      await sleep(300);
    } finally {
      const seen = await cap.stop();
      assert.ok(seen.tunnelFrames > 0, `${what}: in the tunnel (TCP 15008): ${JSON.stringify(seen)}`);
      assert.equal(seen.markerFrames, 0, `${what}: no frame holds the marker: ${JSON.stringify(seen)}`);
      assert.equal(seen.vxlanFrames, 0, `${what}: nothing in plain VXLAN: ${JSON.stringify(seen)}`);
    }
    return out;
  };

  /**
   * Runs `fn` while the proxy of `node` (undefined: the first node) is gone: its agent is held
   * (SIGSTOP) so that it cannot restart the proxy while `fn` runs, the proxy is killed, and the
   * agent goes on after (and starts a new proxy). Resolves with what `fn` gave and the old pid.
   */
  withProxyDown = async <T>(
    node: string | undefined,
    fn: () => Promise<T>,
  ): Promise<{ value: T; proxy: number }> => {
    const agent = Number(readFileSync(agentPidFile(this.name, node), 'utf8'));
    const proxy = proxyPid(this.name, node);
    assert.ok(agent && proxy, `${node ?? 'node1'} runs an agent and a proxy`);
    process.kill(agent, 'SIGSTOP');
    try {
      process.kill(proxy, 'SIGKILL');
      while (proxyPid(this.name, node) === proxy) await sleep(50);
      return { value: await fn(), proxy };
    } finally {
      process.kill(agent, 'SIGCONT');
    }
  };
}

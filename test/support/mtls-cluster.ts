// What the two-node mutual-authentication tests share (tunnel and native routing): the nodes'
// underlay addresses, the policy requiring authentication from client to server on 8080, and
// commands asked of one node's agent; and, for the tests of encryption between nodes
// (`--encryption mtls`), the lab itself (EncryptedLab: up, pods and policies, identities, down)
// with what they ask of it (tunnel status, flows, a GET with a marker, an underlay capture).
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuthStatus } from '../../src/agent/auth.js';
import type { ProxyManagerStatus } from '../../src/agent/proxy-manager.js';
import type { Flow } from '../../src/observe/flow.js';
import type { TunnelStatus } from '../../src/proxy/tunnel.js';
import { captureAll } from './capture.js';
import { cli, ok } from './cli.js';
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
  const onNode = async (node: string, args: string[]) => {
    process.env.WEIR_NODE = node;
    try {
      return await ok(args, lab);
    } finally {
      delete process.env.WEIR_NODE;
    }
  };
  return {
    onNode,
    authOf: async (node: string) =>
      JSON.parse(await onNode(node, ['auth', 'list', '-o', 'json'])) as AuthStatus,
    probe: async (from: string, to: string): Promise<boolean> =>
      (await cli(['lab', 'probe', '--from', from, '--to', to, '--port', '8080/TCP', '--timeout', '800'], lab))
        .code === 0,
  };
}

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
    return JSON.parse(out.trim().split('\n').pop() ?? '{}') as StreamResult;
  };

  /** A capture of every device of the underlay namespace until stop(). */
  capture = () => captureAll(`weir-${this.name}-underlay`, this.o.marker);
}

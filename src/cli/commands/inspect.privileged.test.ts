// The inspection commands against real pinned maps: the test loads the datapath with pins under
// /sys/fs/bpf/weir/<lab>/<node>, writes known entries through the map wrappers, writes a lab
// configuration naming that node into a temporary WEIR_RUN_DIR, creates the node's netns with two
// pod host veths (aliases naming their pods, /32 routes: how the kernel records a lab's pods) and
// runs the CLI in a child process. The agent API (labels, endpoints) is served on the lab's agent
// socket with fixed answers typed as the agent's own, so the CLI is checked both with and without
// an agent.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { EndpointStatus } from '../../agent/agent.js';
import { listenApi } from '../../agent/api-server.js';
import { BpfMap, numPossibleCpus } from '../../bpf/index.js';
import { monotonicNowNs } from '../../datapath/clock.js';
import { DropReason } from '../../datapath/drop-reasons.js';
import { Datapath } from '../../datapath/loader.js';
import { MAPS } from '../../datapath/maps/catalog.js';
import { CtState } from '../../datapath/maps/ct/layout.js';
import { EndpointFlags } from '../../datapath/maps/endpoints/layout.js';
import { portRangePrefixes } from '../../shared/port-prefix.js';
import type { Identity } from '../../identity/allocator.js';
import { parseLabSpec, type LabConfig } from '../../lab/index.js';
import { addNetns, deleteNetns, ifindexIn, ipBatch } from '../../lab/netns.js';
import { writeFile, mkdir } from 'node:fs/promises';
import { pinRoot, repoRoot } from '../../shared/paths.js';
import { metricsSlot } from '../../datapath/maps/metrics/layout.js';

const lab = `weirinsp-${process.pid}`;
const node = 'node1';
const pinLabDir = join(pinRoot, lab);
const pinDir = join(pinLabDir, node);
const runDir = mkdtempSync(join(tmpdir(), 'weir-inspect-'));
// The lab paths of the child (it reads WEIR_RUN_DIR); this process keeps its own runDir.
const labDir = join(runDir, 'labs', lab);
const socket = join(labDir, 'agent', 'agent.sock');

function weir(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      join(repoRoot, 'bin', 'weir'),
      [...args, '--lab', lab],
      { cwd: repoRoot, env: { ...process.env, WEIR_RUN_DIR: runDir }, timeout: 30_000 },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function ok(...args: string[]): Promise<string> {
  const r = await weir(...args);
  assert.equal(r.code, 0, `weir ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

const lines = (text: string) => text.trimEnd().split('\n');
/** Table rows as arrays of cells, cut where the header's columns start (trailing empty cells dropped). */
function cells(text: string): string[][] {
  const [header = '', ...rows] = lines(text);
  const starts = [0, ...[...header.matchAll(/ {3}(?=\S)/g)].map((m) => m.index + 3)];
  return [header, ...rows].map((l) => {
    const row = starts.map((s, i) => l.slice(s, starts[i + 1]).trim());
    while (row.length > 0 && row[row.length - 1] === '') row.pop();
    return row;
  });
}

const config: LabConfig = {
  version: 2,
  name: lab,
  spec: parseLabSpec({ name: lab, nodes: [{ name: node, podCIDR: '10.244.0.0/24' }] }),
  cgroupRoot: '/sys/fs/cgroup/unified',
  createdAt: new Date().toISOString(),
};
const nodeNetns = `weir-${lab}-${node}`;
/** The pods' host veths, as the lab creates them: name, alias, /32 route. */
const pods = [
  { name: 'web', ip: '10.244.0.2', veth: 'weir11111111', ifindex: 0 },
  { name: 'client', ip: '10.244.0.3', veth: 'weir22222222', ifindex: 0 },
];

const identities: Identity[] = [
  { id: 256, labels: ['k8s:app=web', 'k8s:io.kubernetes.pod.namespace=default'] },
  { id: 257, labels: ['k8s:app=client', 'k8s:io.kubernetes.pod.namespace=default'] },
];

const endpoints: EndpointStatus[] = [
  {
    id: 11,
    namespace: 'default',
    pod: 'web',
    ips: ['10.244.0.2', 'fd00:10:244::2'],
    ifname: 'weir11111111',
    ifindex: 1001,
    identity: 256,
    labels: identities[0]!.labels,
    ingressEnforced: true,
    egressEnforced: false,
    policyEntries: 7,
    state: 'ready',
  },
  {
    id: 12,
    namespace: 'default',
    pod: 'client',
    ips: ['10.244.0.3'],
    ifname: 'weir22222222',
    ifindex: 1002,
    identity: 257,
    labels: identities[1]!.labels,
    ingressEnforced: false,
    egressEnforced: true,
    policyEntries: 0,
    state: 'fail-closed',
    error: 'policy needs 70000 entries, the map holds 16384',
  },
];

let dp: Datapath | undefined;
let server: Server | undefined;
const startAgentApi = async () => {
  server = await listenApi(socket, [
    { method: 'GET', pattern: '/v1/identities', handler: () => ({ items: identities }) },
    { method: 'GET', pattern: '/v1/endpoints', handler: () => ({ items: endpoints }) },
  ]);
};
const stopAgentApi = () =>
  new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())).then(() => {
    server = undefined;
  });

/** When the conntrack entries were written (their lifetimes count from here). */
let nowNs = 0n;

before(async () => {
  await mkdir(labDir, { recursive: true });
  await writeFile(join(labDir, 'lab.json'), JSON.stringify(config));
  await addNetns(nodeNetns);
  for (const [i, p] of pods.entries()) {
    await ipBatch(nodeNetns, [
      ['link', 'add', p.veth, 'type', 'veth', 'peer', 'name', `weirpeer${i}`],
      ['link', 'set', 'dev', p.veth, 'alias', `"weir pod default/${p.name}"`],
      ['link', 'set', `weirpeer${i}`, 'up'],
      ['link', 'set', p.veth, 'up'],
      ['route', 'add', `${p.ip}/32`, 'dev', p.veth],
    ]);
    p.ifindex = await ifindexIn(nodeNetns, p.veth);
    (endpoints[i] as EndpointStatus).ifindex = p.ifindex;
  }
  const [web, client] = pods.map((p) => p.ifindex) as [number, number];
  dp = Datapath.open({ pinDir, policyMapMax: 256, ctMax: 1024 });

  dp.ipcache.upsert('10.244.0.2/32', 256);
  dp.ipcache.upsert('10.244.0.3', 257);
  dp.ipcache.upsert('192.168.0.0/16', 16777217);
  dp.ipcache.upsert('fd00:10:244::2/128', 256);

  dp.endpoints.set(web, { endpointId: 11, identity: 256, flags: EndpointFlags.enforceIngress });
  dp.endpoints.set(client, {
    endpointId: 12,
    identity: 257,
    flags: EndpointFlags.enforceEgress | EndpointFlags.failClosed,
  });

  const pol = dp.ensurePolicyMap(11);
  pol.upsert({ identity: 257, direction: 'ingress', protocol: 6, port: 80 }, { cookie: 7, auth: true });
  pol.upsert(
    { identity: 257, direction: 'ingress', protocol: 6, port: 8080, portPrefixLen: 15 },
    { cookie: 8 },
  );
  for (const b of portRangePrefixes(1000, 1999))
    pol.upsert({ identity: 257, direction: 'ingress', protocol: 17, ...b }, { cookie: 9 });
  pol.upsert(
    { identity: 257, direction: 'ingress', protocol: 17, port: 53 },
    { proxyPort: 15001, cookie: 10 },
  );
  pol.upsert({ identity: 1, direction: 'ingress', protocol: 0 }, {});
  pol.upsert({ identity: 2, direction: 'egress', protocol: 6 }, { deny: true, cookie: 3 });
  dp.ensurePolicyMap(12);

  nowNs = monotonicNowNs();
  const entry = {
    cookie: 0,
    srcIdentity: 0,
    tcpFlagsFwd: 0,
    tcpFlagsRev: 0,
    revNatIndex: 0,
    flags: 0,
    proxyPort: 0,
  };
  dp.ct.set(
    {
      family: 4,
      src: '10.244.0.3',
      dst: '10.244.0.2',
      sport: 40000,
      dport: 80,
      proto: 6,
      direction: 'ingress',
    },
    {
      ...entry,
      packetsFwd: 3n,
      bytesFwd: 180n,
      packetsRev: 2n,
      bytesRev: 120n,
      lifetimeNs: nowNs + 3600n * 1_000_000_000n,
      // Redirected to the node proxy's listener 10000 (CT_ENTRY_F_TO_PROXY).
      flags: 1,
      proxyPort: 10000,
      cookie: 7,
      srcIdentity: 257,
      state: CtState.established,
    },
  );
  dp.ct.set(
    {
      family: 6,
      src: 'fd00:10:244::2',
      dst: 'fd00:10:244::3',
      sport: 5353,
      dport: 53,
      proto: 17,
      direction: 'egress',
    },
    {
      ...entry,
      packetsFwd: 1n,
      bytesFwd: 80n,
      packetsRev: 0n,
      bytesRev: 0n,
      lifetimeNs: nowNs - 1_000_000_000n,
      state: CtState.new,
      revNatIndex: 3,
    },
  );

  const perCpu = (packets: bigint, bytes: bigint) =>
    Array.from({ length: numPossibleCpus() }, (_, i) =>
      i === 0 ? { packets, bytes } : { packets: 1n, bytes: 100n },
    );
  dp.metrics.typed.update(metricsSlot(0, 1), perCpu(10n, 1000n));
  dp.metrics.typed.update(metricsSlot(DropReason.POLICY, 2), perCpu(4n, 240n));
});

after(async () => {
  await stopAgentApi();
  await deleteNetns(nodeNetns);
  dp?.destroy();
  rmSync(pinLabDir, { recursive: true, force: true });
  rmSync(runDir, { recursive: true, force: true });
});

describe('weir bpf (pinned maps, no agent)', () => {
  it('ipcache list shows every prefix and its identity', async () => {
    assert.deepEqual(cells(await ok('bpf', 'ipcache', 'list')), [
      ['IP PREFIX', 'IDENTITY', 'LABELS'],
      ['10.244.0.2/32', '256'],
      ['10.244.0.3/32', '257'],
      ['192.168.0.0/16', '16777217'],
      ['fd00:10:244::2/128', '256'],
    ]);
    assert.deepEqual(JSON.parse(await ok('bpf', 'ipcache', 'list', '-o', 'json')), [
      { prefix: '10.244.0.2/32', identity: 256 },
      { prefix: '10.244.0.3/32', identity: 257 },
      { prefix: '192.168.0.0/16', identity: 16777217 },
      { prefix: 'fd00:10:244::2/128', identity: 256 },
    ]);
  });

  it('endpoint list shows each veth with its pod, endpoint id, identity and flags', async () => {
    assert.deepEqual(cells(await ok('bpf', 'endpoint', 'list')), [
      ['ENDPOINT ID', 'IFINDEX', 'INTERFACE', 'POD', 'IDENTITY', 'FLAGS'],
      ['11', String(pods[0]?.ifindex), 'weir11111111', 'default/web', '256', 'enforceIngress'],
      ['12', String(pods[1]?.ifindex), 'weir22222222', 'default/client', '257', 'enforceEgress,failClosed'],
    ]);
  });

  it('policy get shows the entries, ranges merged, reserved identities by label', async () => {
    const expected = [
      ['POLICY', 'DIRECTION', 'IDENTITY', 'PORT/PROTO', 'PROXY PORT', 'AUTH TYPE', 'COOKIE'],
      ['Allow', 'Ingress', '1 reserved:host', 'ANY', 'NONE', 'disabled', '0'],
      ['Allow', 'Ingress', '257', '80/TCP', 'NONE', 'mtls', '7'],
      ['Allow', 'Ingress', '257', '8080-8081/TCP', 'NONE', 'disabled', '8'],
      ['Allow', 'Ingress', '257', '53/UDP', '15001', 'disabled', '10'],
      ['Allow', 'Ingress', '257', '1000-1999/UDP', 'NONE', 'disabled', '9'],
      ['Deny', 'Egress', '2 reserved:world', 'ANY/TCP', 'NONE', 'disabled', '3'],
    ];
    assert.deepEqual(cells(await ok('bpf', 'policy', 'get', 'default/web')), expected);
    assert.deepEqual(cells(await ok('bpf', 'policy', 'get', '11')), expected);
    const json = JSON.parse(await ok('bpf', 'policy', 'get', 'default/web', '-o', 'json'));
    assert.equal(json.endpointId, 11);
    assert.deepEqual(json.entries[2], {
      policy: 'Allow',
      direction: 'ingress',
      identity: 257,
      protocol: 'TCP',
      port: 8080,
      endPort: 8081,
      proxyPort: 0,
      authType: 'disabled',
      cookie: 8,
    });
    assert.deepEqual(json.entries[0].labels, ['reserved:host']);
    assert.equal(json.entries.length, 6);
  });

  it('policy get of an endpoint with an empty map prints no entries', async () => {
    assert.equal(await ok('bpf', 'policy', 'get', 'default/client'), 'No resources found.\n');
  });

  it('ct list shows both directions of each connection, expired ones flagged', async () => {
    const t0 = monotonicNowNs();
    const rows = cells(await ok('bpf', 'ct', 'list'));
    const t1 = monotonicNowNs();
    assert.deepEqual(rows[0], [
      'PROTO',
      'SRC -> DST',
      'DIRECTION',
      'STATE',
      'EXPIRES IN',
      'FWD PACKETS',
      'FWD BYTES',
      'REV PACKETS',
      'REV BYTES',
      'SRC IDENTITY',
      'COOKIE',
      'REV-NAT',
      'PROXY',
    ]);
    assert.equal(rows.length, 3);
    const [tcp, udp] = [rows[1]!, rows[2]!];
    assert.deepEqual(tcp.slice(0, 4), ['TCP', '10.244.0.3:40000 -> 10.244.0.2:80', 'ingress', 'established']);
    // An hour from when the entry was written, less the time the earlier tests took.
    const left = /^(\d+)m(\d+)s$/.exec(tcp[4]!);
    assert.ok(left, tcp[4]);
    const shown = Number(left[1]) * 60 + Number(left[2]);
    const secs = (t: bigint) => Number((t - nowNs) / 1_000_000_000n);
    assert.ok(shown <= 3600 - secs(t0) && shown >= 3600 - secs(t1) - 1, `${tcp[4]} after ${secs(t1)} s`);
    assert.deepEqual(tcp.slice(5), ['3', '180', '2', '120', '257', '7', '', 'to 10000']);
    assert.deepEqual(udp, [
      'UDP',
      '[fd00:10:244::2]:5353 -> [fd00:10:244::3]:53',
      'egress',
      'new',
      'expired',
      '1',
      '80',
      '0',
      '0',
      '0',
      '0',
      '3',
    ]);
    const json = JSON.parse(await ok('bpf', 'ct', 'list', '-o', 'json'));
    assert.equal(json.length, 2);
    assert.deepEqual(
      { ...json[0], expiresInSeconds: undefined },
      {
        protocol: 'TCP',
        family: 4,
        src: '10.244.0.3',
        sport: 40000,
        dst: '10.244.0.2',
        dport: 80,
        direction: 'ingress',
        state: 'established',
        expired: false,
        expiresInSeconds: undefined,
        packetsFwd: 3,
        bytesFwd: 180,
        packetsRev: 2,
        bytesRev: 120,
        srcIdentity: 257,
        cookie: 7,
        revNatIndex: 0,
        proxyPort: 10000,
        fromProxy: false,
      },
    );
    assert.ok(json[0].expiresInSeconds > 3500 && json[0].expiresInSeconds <= 3600);
    assert.equal(json[1].expired, true);
  });

  it('metrics list sums the CPUs and names the reasons', async () => {
    const others = BigInt(numPossibleCpus() - 1);
    assert.deepEqual(cells(await ok('bpf', 'metrics', 'list')), [
      ['REASON', 'DIRECTION', 'PACKETS', 'BYTES'],
      ['Forwarded', 'INGRESS', String(10n + others), String(1000n + 100n * others)],
      ['Policy denied', 'EGRESS', String(4n + others), String(240n + 100n * others)],
    ]);
    assert.deepEqual(JSON.parse(await ok('bpf', 'metrics', 'list', '-o', 'json'))[1], {
      reason: 133,
      name: 'POLICY',
      description: 'Policy denied',
      direction: 'egress',
      packets: Number(4n + others),
      bytes: Number(240n + 100n * others),
    });
  });

  it('rejects unknown pods and endpoints without a policy map, naming them', async () => {
    const pod = await weir('bpf', 'policy', 'get', 'default/nope');
    assert.equal(pod.code, 1);
    assert.match(pod.stderr, /no pod 'default\/nope'.*\[ERR_CLI_NOT_FOUND\]/);
    const id = await weir('bpf', 'policy', 'get', '99');
    assert.equal(id.code, 1);
    assert.match(id.stderr, /endpoint 99 has no policy map.*\[ERR_CLI_NOT_FOUND\]/);
  });

  it('maps list shows every map of the catalogue with its pin, kernel id and elements', async () => {
    const rows = JSON.parse(await ok('bpf', 'maps', 'list', '-o', 'json')) as {
      name: string;
      lifetime: string;
      pin: string;
      id?: number;
      entries?: number;
    }[];
    const by = new Map(rows.map((r) => [r.name, r]));
    for (const m of MAPS) {
      if (m.name === 'policy_<id>') continue;
      const r = by.get(m.name);
      assert.ok(r, `${m.name} is listed`);
      assert.equal(r.pin, m.lifetime === 'pinned' ? 'pinned' : 'not pinned', m.name);
    }
    assert.equal(by.get('weir_lb_ct')?.pin, 'pinned');
    assert.equal(by.get('weir_ipcache')?.entries, 4);
    assert.equal(by.get('weir_endpoints')?.entries, 2);
    assert.ok((by.get('weir_ct')?.id ?? 0) > 0);
    // Socket storage has no keys to walk: listed without a count.
    assert.equal(by.get('weir_lb_sk_rev')?.pin, 'pinned');
    assert.equal(by.get('weir_lb_sk_rev')?.entries, undefined);
    assert.equal(by.get('policy_11')?.entries, 5 + portRangePrefixes(1000, 1999).length);
    assert.equal(by.get('policy_12')?.entries, 0);
  });

  it('refuses a pin replaced by a map of another kind, naming it', async () => {
    const pin = join(pinDir, 'weir_ipcache');
    const original = BpfMap.fromPin(pin);
    const fake = BpfMap.create({ type: 'hash', name: 'weir_fake', keySize: 24, valueSize: 8, maxEntries: 4 });
    unlinkSync(pin);
    fake.pin(pin);
    try {
      for (const args of [
        ['bpf', 'ipcache', 'list'],
        ['bpf', 'maps', 'list'],
      ]) {
        const r = await weir(...args);
        assert.equal(r.code, 1, args.join(' '));
        assert.match(
          r.stderr,
          /map weir_ipcache .* is a hash map; weir's weir_ipcache is a lpm_trie.*ERR_DATAPATH_MAP_KIND/,
        );
        assert.equal(r.stdout, '');
      }
    } finally {
      fake.unpin(pin);
      fake.close();
      original.pin(pin);
      original.close();
    }
    assert.equal((await weir('bpf', 'ipcache', 'list')).code, 0);
  });

  it('the agent commands say that no agent answers', async () => {
    for (const args of [
      ['endpoint', 'list'],
      ['identity', 'list'],
    ]) {
      const r = await weir(...args);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /no agent is listening on .*agent\.sock.*\[ERR_AGENT_UNREACHABLE\]/);
    }
  });
});

describe('weir endpoint|identity and labels (agent answering)', () => {
  before(startAgentApi);
  after(stopAgentApi);

  it('bpf policy get and ipcache list show the labels of allocated identities', async () => {
    const rows = cells(await ok('bpf', 'policy', 'get', 'default/web'));
    assert.deepEqual(rows[2], [
      'Allow',
      'Ingress',
      '257 k8s:app=client,k8s:io.kubernetes.pod.namespace=default',
      '80/TCP',
      'NONE',
      'mtls',
      '7',
    ]);
    const ipcache = JSON.parse(await ok('bpf', 'ipcache', 'list', '-o', 'json'));
    assert.deepEqual(ipcache[0], { prefix: '10.244.0.2/32', identity: 256, labels: identities[0]!.labels });
    assert.deepEqual(ipcache[2], { prefix: '192.168.0.0/16', identity: 16777217 });
  });

  it('endpoint list and get', async () => {
    assert.deepEqual(cells(await ok('endpoint', 'list')), [
      [
        'ENDPOINT ID',
        'POD',
        'IDENTITY',
        'INGRESS ENFORCEMENT',
        'EGRESS ENFORCEMENT',
        'IPV4',
        'IPV6',
        'STATE',
        'POLICY ENTRIES',
      ],
      ['11', 'default/web', '256', 'Enabled', 'Disabled', '10.244.0.2', 'fd00:10:244::2', 'ready', '7'],
      ['12', 'default/client', '257', 'Disabled', 'Enabled', '10.244.0.3', '', 'fail-closed', '0'],
    ]);
    assert.deepEqual(JSON.parse(await ok('endpoint', 'list', '-o', 'json')), endpoints);
    const get = lines(await ok('endpoint', 'get', 'default/client'));
    assert.ok(get.includes('labels                k8s:app=client,k8s:io.kubernetes.pod.namespace=default'));
    assert.ok(get.includes('error                 policy needs 70000 entries, the map holds 16384'));
    assert.deepEqual(JSON.parse(await ok('endpoint', 'get', '11', '-o', 'json')), endpoints[0]);
    const missing = await weir('endpoint', 'get', 'default/nope');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no endpoint 'default\/nope'.*\[ERR_CLI_NOT_FOUND\]/);
  });

  it('identity list has the reserved identities, then the allocated ones', async () => {
    const rows = cells(await ok('identity', 'list'));
    assert.deepEqual(rows.slice(0, 3), [
      ['ID', 'LABELS'],
      ['1', 'reserved:host'],
      ['2', 'reserved:world'],
    ]);
    assert.deepEqual(rows.slice(-2), [
      ['256', 'k8s:app=web,k8s:io.kubernetes.pod.namespace=default'],
      ['257', 'k8s:app=client,k8s:io.kubernetes.pod.namespace=default'],
    ]);
    assert.deepEqual(JSON.parse(await ok('identity', 'get', '257', '-o', 'json')), identities[1]);
    assert.match(await ok('identity', 'get', '7', '-o', 'yaml'), /reserved:kube-apiserver/);
  });
});

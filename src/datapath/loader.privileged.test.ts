// The Datapath loader against the kernel: pins and their reuse across a restart, config checks,
// and two pods in weir-dptest-* namespaces whose real TCP connections the attached programs judge.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BpfMap, MapType, ifindexIn, macIn, queryTc } from '../bpf/index.js';
import { run } from '../shared/exec.js';
import { pinRoot } from '../shared/paths.js';
import { DropReason } from './drop-reasons.js';
import { Datapath, PINNED_MAPS, PROGRAMS, STAGE_PROGRAMS } from './loader.js';
import { RETIRED_PINS } from './maps/catalog.js';

const TCP = 6;
const PORT = 8080;

// A one-line TCP server (pod B) and a client that exits 0 only if it read the server's reply.
const serverJs = `require('net').createServer((s) => s.end('weir-ok')).listen(${PORT}, '0.0.0.0')`;
const clientJs = (host: string) =>
  `const s = require('net').connect(${PORT}, '${host}'); let d = '';` +
  `s.setTimeout(1000, () => process.exit(2)); s.on('data', (c) => (d += c));` +
  `s.on('end', () => process.exit(d === 'weir-ok' ? 0 : 3)); s.on('error', () => process.exit(4));`;

describe('Datapath loader', () => {
  const tag = randomBytes(3).toString('hex');
  const pinDir = join(pinRoot, `dptest-${tag}`);
  const node = `weir-dptest-${tag}-node`;
  const pods = { a: `weir-dptest-${tag}-a`, b: `weir-dptest-${tag}-b` };
  const ip = { a: '10.200.1.2', b: '10.200.2.2' };
  let dp: Datapath | undefined;
  let server: ChildProcess | undefined;

  before(async () => {
    for (const ns of [node, pods.a, pods.b]) await run(['ip', 'netns', 'add', ns]);
    await run(['ip', 'netns', 'exec', node, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    for (const [pod, net] of [
      ['a', '1'],
      ['b', '2'],
    ] as const) {
      const host = `weirdp${pod}`;
      await run([
        'ip',
        '-n',
        node,
        'link',
        'add',
        host,
        'type',
        'veth',
        'peer',
        'name',
        'eth0',
        'netns',
        pods[pod],
      ]);
      await run(['ip', '-n', node, 'addr', 'add', `10.200.${net}.1/24`, 'dev', host]);
      await run(['ip', '-n', node, 'link', 'set', host, 'up']);
      await run(['ip', '-n', pods[pod], 'addr', 'add', `${ip[pod]}/24`, 'dev', 'eth0']);
      await run(['ip', '-n', pods[pod], 'link', 'set', 'eth0', 'up']);
      await run(['ip', '-n', pods[pod], 'link', 'set', 'lo', 'up']);
      await run(['ip', '-n', pods[pod], 'route', 'add', 'default', 'via', `10.200.${net}.1`]);
    }
    server = spawn('ip', ['netns', 'exec', pods.b, process.execPath, '-e', serverJs], { stdio: 'ignore' });
    // Wait (bounded) until the server listens: a connection from B's own namespace succeeds.
    for (let i = 0; i < 50; i++) {
      const r = await run(['ip', 'netns', 'exec', pods.b, process.execPath, '-e', clientJs('127.0.0.1')], {
        check: false,
        timeoutMs: 5000,
      });
      if (r.code === 0) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('test server in pod B did not start');
  });

  after(async () => {
    dp?.close();
    server?.kill('SIGKILL');
    for (const ns of [pods.a, pods.b, node]) await run(['ip', 'netns', 'del', ns], { check: false });
    rmSync(pinDir, { recursive: true, force: true });
  });

  /** True when pod A gets pod B's reply over TCP. */
  const connect = async () =>
    (
      await run(['ip', 'netns', 'exec', pods.a, process.execPath, '-e', clientJs(ip.b)], {
        check: false,
        timeoutMs: 5000,
      })
    ).code === 0;

  it('refuses bad configuration before loading anything', () => {
    assert.throws(() => Datapath.open({ policyMapMax: 10 }), { code: 'ERR_DATAPATH_CONFIG' });
    assert.throws(() => Datapath.open({ ctMax: 1.5 }), { code: 'ERR_DATAPATH_CONFIG' });
    assert.throws(() => Datapath.open({ config: { ctTimeoutTcp: 0 } }), { code: 'ERR_DATAPATH_CONFIG' });
    for (const eventsBufferBytes of [3 << 20, 2048, 2 ** 31])
      assert.throws(() => Datapath.open({ eventsBufferBytes }), { code: 'ERR_DATAPATH_CONFIG' });
  });

  it('pins every map and program, and removes the pins of retired maps', () => {
    // An earlier weir's socket LB reverse map (now socket storage, weir_lb_sk_rev).
    const old = BpfMap.create({
      type: 'lru_hash',
      name: 'weir_lb_reverse',
      keySize: 32,
      valueSize: 24,
      maxEntries: 16,
    });
    old.pin(join(pinDir, 'weir_lb_reverse_sk'));
    old.close();
    dp = Datapath.open({ pinDir, policyMapMax: 1024, ctMax: 65536 });
    for (const name of [...PINNED_MAPS, ...Object.values(PROGRAMS)])
      assert.ok(existsSync(join(pinDir, name)), name);
    for (const name of RETIRED_PINS) assert.ok(!existsSync(join(pinDir, name)), `${name} is gone`);
  });

  it('attaches both programs to pod veths; their verdicts decide real connections', async () => {
    assert.ok(dp);
    dp.ipcache.upsert(ip.a, 1001);
    dp.ipcache.upsert(ip.b, 1002);
    const ifA = dp.attachEndpoint({ netns: node, ifname: 'weirdpa', endpointId: 1, identity: 1001 });
    dp.attachEndpoint({ netns: node, ifname: 'weirdpb', endpointId: 2, identity: 1002 });
    assert.ok(queryTc({ netns: node, ifindex: ifA, direction: 'ingress' }));
    assert.ok(queryTc({ netns: node, ifindex: ifA, direction: 'egress' }));
    assert.ok(existsSync(join(pinDir, 'policy_1')));

    assert.equal(await connect(), false, 'no policy: denied');
    assert.ok(dp.metrics.get(DropReason.POLICY, 'egress').packets >= 1n);

    dp.policy(1).upsert({ identity: 1002, direction: 'egress', protocol: TCP, port: PORT }, {});
    assert.equal(await connect(), false, 'B does not admit A yet');
    assert.ok(dp.metrics.get(DropReason.POLICY, 'ingress').packets >= 1n);

    dp.policy(2).upsert({ identity: 1001, direction: 'ingress', protocol: TCP, port: PORT }, {});
    assert.equal(await connect(), true, 'allowed both ways');
    assert.ok(dp.ct.list().some((c) => c.src === ip.a && c.dst === ip.b && c.packetsRev >= 1n));
  });

  it("routes pod to pod past the node's stack (eBPF host routing), B's ingress judged in A's program", async () => {
    assert.ok(dp);
    const forwarded = async () => {
      const snmp = (await run(['ip', 'netns', 'exec', node, 'cat', '/proc/net/snmp'])).stdout.split('\n');
      const [head, values] = snmp.filter((l) => l.startsWith('Ip: '));
      const i = head?.split(' ').indexOf('ForwDatagrams') ?? -1;
      return Number(values?.split(' ')[i]);
    };
    for (const [pod, id, identity] of [
      ['a', 1, 1001],
      ['b', 2, 1002],
    ] as const) {
      const local = { ips: [ip[pod]], mac: macIn(pods[pod], 'eth0'), hostMac: macIn(node, `weirdp${pod}`) };
      dp.attachEndpoint({ netns: node, ifname: `weirdp${pod}`, endpointId: id, identity, local });
      assert.deepEqual(dp.lxc.get(ip[pod]), {
        ip: ip[pod],
        ifindex: ifindexIn(node, `weirdp${pod}`),
        mac: local.mac,
        hostMac: local.hostMac,
      });
    }
    const before = await forwarded();
    assert.equal(await connect(), true, 'allowed both ways');
    assert.equal(await forwarded(), before, "no packet went through the node's forwarding");
    dp.policy(2).clear();
    dp.ct.flush();
    const drops = dp.metrics.get(DropReason.POLICY, 'ingress').packets;
    assert.equal(await connect(), false, "B's ingress policy still decides");
    assert.ok(dp.metrics.get(DropReason.POLICY, 'ingress').packets > drops);
    assert.equal(await forwarded(), before, 'denied before the stack too');
    dp.policy(2).upsert({ identity: 1001, direction: 'ingress', protocol: TCP, port: PORT }, {});
  });

  it('keeps forwarding while the agent is gone, and finds its state again from the pins', async () => {
    assert.ok(dp);
    dp.close();
    dp = undefined;
    assert.equal(await connect(), true, 'programs and maps outlive the process handles');
    dp = Datapath.open({ pinDir, policyMapMax: 1024, ctMax: 65536 });
    assert.equal(dp.ipcache.get(ip.b), 1002);
    assert.equal(dp.policy(2).list().length, 1);
    assert.ok(dp.ct.list().length >= 1);
    dp.policy(2).clear();
    dp.ct.flush();
    assert.equal(await connect(), false, 'the reopened maps are the ones the attached programs use');
  });

  it("makes many endpoints' policy maps at once (pinned, linked in weir_policy, kept when asked again) and removes them at once", () => {
    assert.ok(dp);
    assert.throws(() => dp?.ensurePolicyMaps([5, 0]), { code: 'ERR_DATAPATH_ENDPOINT' });
    assert.equal(existsSync(join(pinDir, 'policy_5')), false, 'nothing made before every id is checked');
    const ids = [10, 11, 12];
    const maps = dp.ensurePolicyMaps(ids);
    for (const [i, id] of ids.entries()) {
      assert.ok(existsSync(join(pinDir, `policy_${id}`)));
      assert.deepEqual(dp.livePolicy(id), [], 'linked: the datapath finds an empty map');
      maps[i]?.upsert({ identity: 1001 + i, direction: 'ingress', protocol: TCP, port: PORT }, {});
      assert.equal(dp.livePolicy(id)?.[0]?.key.identity, 1001 + i, 'the very map the datapath reads');
    }
    const again = dp.ensurePolicyMaps([...ids, 2]);
    assert.deepEqual(
      again.map((m) => m.map.id),
      [...maps, dp.policy(2)].map((m) => m?.map.id),
    );
    dp.detachEndpoints(ids.map((endpointId) => ({ netns: node, endpointId })));
    for (const id of ids) {
      assert.equal(dp.livePolicy(id), undefined, 'unlinked from weir_policy');
      assert.equal(existsSync(join(pinDir, `policy_${id}`)), false);
    }
    assert.notEqual(dp.livePolicy(2), undefined, 'the others stay linked');
  });

  it('refuses a pinned map of another size', () => {
    assert.throws(() => Datapath.open({ pinDir, policyMapMax: 1024, ctMax: 131072 }), {
      code: 'ERR_BPF_MAP_INCOMPATIBLE',
    });
    // The ring buffer too (its size is the map's max_entries).
    assert.throws(
      () => Datapath.open({ pinDir, policyMapMax: 1024, ctMax: 65536, eventsBufferBytes: 1 << 20 }),
      { code: 'ERR_BPF_MAP_INCOMPATIBLE', message: /weir_events/ },
    );
  });

  it('replaces a weir_metrics pinned as an earlier kind (per-CPU hash) instead of refusing it', () => {
    const dir = `${pinDir}-metrics`;
    const old = BpfMap.create({
      type: 'percpu_hash',
      name: 'weir_metrics',
      keySize: 8,
      valueSize: 16,
      maxEntries: 1024,
    });
    try {
      rmSync(dir, { recursive: true, force: true });
      old.pin(join(dir, 'weir_metrics'));
    } finally {
      old.close();
    }
    const fresh = Datapath.open({ pinDir: dir, policyMapMax: 1024, ctMax: 65536 });
    try {
      const pinned = BpfMap.fromPin(join(dir, 'weir_metrics'));
      assert.equal(pinned.type, MapType.percpu_array);
      pinned.close();
      assert.deepEqual(fresh.metrics.list(), []);
    } finally {
      fresh.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('replaces a weir_flow_scratch pinned with another layout (an earlier stage state) instead of refusing it', () => {
    const dir = `${pinDir}-scratch`;
    const old = BpfMap.create({
      type: 'percpu_array',
      name: 'weir_flow_scrat',
      keySize: 4,
      valueSize: 96,
      maxEntries: 1,
    });
    try {
      rmSync(dir, { recursive: true, force: true });
      old.pin(join(dir, 'weir_flow_scratch'));
    } finally {
      old.close();
    }
    const fresh = Datapath.open({ pinDir: dir, policyMapMax: 1024, ctMax: 65536 });
    try {
      const pinned = BpfMap.fromPin(join(dir, 'weir_flow_scratch'));
      assert.notEqual(pinned.valueSize, 96, 'the pin is the new layout');
      pinned.close();
      // Every stage slot is filled at load, before anything is attached.
      for (const [slot] of STAGE_PROGRAMS) assert.ok(fresh.calls.lookup(slot), `weir_calls[${slot}]`);
    } finally {
      fresh.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('detaches an endpoint completely, then destroy() removes every pin', async () => {
    assert.ok(dp);
    const ifB = dp.attachEndpoint({ netns: node, ifname: 'weirdpb', endpointId: 2, identity: 1002 });
    dp.detachEndpoint({ netns: node, ifname: 'weirdpb', endpointId: 2 });
    assert.equal(queryTc({ netns: node, ifindex: ifB, direction: 'egress' }), undefined);
    assert.equal(dp.endpoints.get(ifB), undefined);
    assert.equal(dp.lxc.get(ip.b), undefined, 'its weir_lxc entries go with it');
    assert.equal(existsSync(join(pinDir, 'policy_2')), false);
    assert.throws(() => dp?.policy(2), { code: 'ERR_DATAPATH_NO_POLICY_MAP' });
    dp.destroy();
    dp = undefined;
    assert.equal(existsSync(pinDir) && readdirSync(pinDir).length > 0, false);
  });
});

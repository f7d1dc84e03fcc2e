// Socket load balancing through the real kernel: sock.o attached to a weir-socklbtest-* cgroup,
// client processes inside that cgroup, servers on three backend addresses in a weir netns.
//
//   netns S  weir-sl0  10.99.0.2-4/24, fd00:99::2-4/64   servers (TCP and UDP :8080), client 1
//   netns C  weir-sl1  10.99.0.1/24,   fd00:99::1/64     client 2 (another netns cookie)
//
// Frontends (10.96.x / fd00:96::x) exist nowhere: only the cgroup programs make them reachable.
// Servers answer with the address they were reached at, so the client learns which backend it
// got, and log every connection, so the test sees what the servers saw.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { queryCgroup } from '../bpf/index.js';
import { findCgroup2, removeCgroup } from '../lab/cgroup.js';
import { run } from '../shared/exec.js';
import { pinRoot } from '../shared/paths.js';
import { Datapath, SOCK_REUSED_MAPS, SOCK_PROGRAMS } from './loader.js';
import { ServiceFlags } from './maps/lb/layout.js';
import type { Frontend } from './maps/lb/index.js';

const BACKENDS4 = ['10.99.0.2', '10.99.0.3', '10.99.0.4'];
const BACKENDS6 = ['fd00:99::2', 'fd00:99::3', 'fd00:99::4'];
const PORT = 8080;

// Listens on every backend address (TCP and UDP :port, TCP echo :port+1); answers with the local
// address; logs JSON lines.
const SERVER = `
const net = require('net'), dgram = require('dgram');
const addrs = JSON.parse(process.argv[1]), port = Number(process.argv[2]);
let ready = 0;
const up = () => { if (++ready === addrs.length * 3) console.log(JSON.stringify({ ready: true })); };
for (const a of addrs) {
  net.createServer((s) => {
    console.log(JSON.stringify({ proto: 'echo', local: s.localAddress, remote: s.remoteAddress }));
    s.on('data', (d) => s.write(s.localAddress + ' ' + d));
  }).listen(port + 1, a, up);
  net.createServer((s) => {
    console.log(JSON.stringify({ proto: 'tcp', local: s.localAddress, remote: s.remoteAddress }));
    s.end(s.localAddress);
  }).listen(port, a, up);
  const u = dgram.createSocket(a.includes(':') ? 'udp6' : 'udp4');
  u.on('message', (m, r) => {
    console.log(JSON.stringify({ proto: 'udp', local: a, remote: r.address }));
    u.send(a, r.port, r.address);
  });
  u.bind(port, a, up);
}`;

// Joins the cgroup first (so every socket it opens is seen by the programs), then runs `count`
// rounds: TCP connects (peer = getpeername, backend = what the server said) or UDP datagrams from
// one unconnected socket (peer = recvmsg's source). Prints one JSON array of results.
const CLIENT = `
require('fs').writeFileSync(process.argv[1] + '/cgroup.procs', String(process.pid));
const net = require('net'), dgram = require('dgram');
const spec = JSON.parse(process.argv[2]);
const tcp = () => new Promise((done) => {
  const t0 = process.hrtime.bigint();
  const s = net.connect(spec.port, spec.host);
  let data = '', peer;
  s.setTimeout(3000, () => { s.destroy(); done({ error: 'TIMEOUT' }); });
  s.on('connect', () => { peer = { address: s.remoteAddress, port: s.remotePort }; });
  s.on('data', (d) => { data += d; });
  s.on('end', () => { s.destroy(); done({ peer, backend: data }); });
  s.on('error', (e) => done({ error: e.code, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
});
const udp = (sock, host) => new Promise((done) => {
  const t0 = process.hrtime.bigint();
  const timer = setTimeout(() => { sock.removeAllListeners('message'); done({ error: 'TIMEOUT' }); }, 3000);
  sock.once('message', (m, r) => { clearTimeout(timer); done({ peer: { address: r.address, port: r.port }, backend: String(m) }); });
  sock.send('x', spec.port, host, (e) => {
    if (e) { clearTimeout(timer); sock.removeAllListeners('message'); done({ error: e.code, ms: Number(process.hrtime.bigint() - t0) / 1e6 }); }
  });
});
// One connection kept open: a request, a pause of spec.hold ms (the test changes the service
// meanwhile), a second request on the same connection.
const hold = () => new Promise((done) => {
  const s = net.connect(spec.port, spec.host);
  const replies = [];
  let peer;
  s.setTimeout(spec.hold + 3000, () => { s.destroy(); done({ error: 'TIMEOUT' }); });
  s.on('connect', () => { peer = { address: s.remoteAddress, port: s.remotePort }; s.write('a'); });
  s.on('data', (d) => {
    replies.push(String(d));
    if (replies.length === 1) return setTimeout(() => s.write('b'), spec.hold);
    const later = { address: s.remoteAddress, port: s.remotePort };
    s.destroy();
    done({ peer, later, replies });
  });
  s.on('error', (e) => done({ error: e.code }));
});
(async () => {
  if (spec.hold) return console.log(JSON.stringify([await hold()]));
  const out = [];
  const sock = spec.proto === 'udp' ? dgram.createSocket(spec.host.includes(':') ? 'udp6' : 'udp4') : undefined;
  // spec.hosts: one socket sending to each frontend in turn.
  const hosts = spec.hosts ?? [spec.host];
  for (let i = 0; i < spec.count; i++) out.push(sock ? await udp(sock, hosts[i % hosts.length]) : await tcp());
  sock?.close();
  console.log(JSON.stringify(out));
})();`;

interface Result {
  peer?: { address: string; port: number };
  later?: { address: string; port: number };
  replies?: string[];
  backend?: string;
  error?: string;
  ms?: number;
}

describe('socket load balancing (cgroup sock_addr programs)', () => {
  const tag = randomBytes(3).toString('hex');
  const nsS = `weir-socklbtest-${tag}`;
  const nsC = `weir-socklbtest-${tag}c`;
  const cgroup2 = findCgroup2();
  const cgroupPath = join(cgroup2 ?? '/nonexistent', nsS);
  const pinDir = join(pinRoot, `socklbtest-${tag}`);
  let dp: Datapath | undefined;
  let server: ChildProcess | undefined;
  const seen: { proto: string; local: string; remote: string }[] = [];

  const ns = (name: string, ...argv: string[]) => run(['ip', '-n', name, ...argv], { timeoutMs: 10_000 });

  before(async () => {
    if (!cgroup2) throw new Error('no cgroup v2 mount');
    await run(['ip', 'netns', 'add', nsS]);
    await run(['ip', 'netns', 'add', nsC]);
    await ns(nsS, 'link', 'set', 'lo', 'up');
    await ns(nsC, 'link', 'set', 'lo', 'up');
    await ns(nsS, 'link', 'add', 'weir-sl0', 'type', 'veth', 'peer', 'name', 'weir-sl1', 'netns', nsC);
    for (const [i, a] of BACKENDS4.entries()) {
      await ns(nsS, 'addr', 'add', `${a}/24`, 'dev', 'weir-sl0');
      await ns(nsS, 'addr', 'add', `${BACKENDS6[i]}/64`, 'dev', 'weir-sl0', 'nodad');
    }
    await ns(nsC, 'addr', 'add', '10.99.0.1/24', 'dev', 'weir-sl1');
    await ns(nsC, 'addr', 'add', 'fd00:99::1/64', 'dev', 'weir-sl1', 'nodad');
    await ns(nsS, 'link', 'set', 'weir-sl0', 'up');
    await ns(nsC, 'link', 'set', 'weir-sl1', 'up');
    mkdirSync(cgroupPath);

    dp = Datapath.open({ pinDir, policyMapMax: 1024, ctMax: 65536, maglevTableSize: 251 });
    dp.attachSockLb(cgroupPath);
    for (const [i, a] of BACKENDS4.entries()) {
      dp.lb.upsertBackend(1 + i, { address: a, port: PORT, proto: 'tcp' });
      dp.lb.upsertBackend(11 + i, { address: a, port: PORT, proto: 'udp' });
      dp.lb.upsertBackend(21 + i, { address: BACKENDS6[i] ?? '', port: PORT, proto: 'tcp' });
      dp.lb.upsertBackend(31 + i, { address: BACKENDS6[i] ?? '', port: PORT, proto: 'udp' });
      dp.lb.upsertBackend(41 + i, { address: a, port: PORT + 1, proto: 'tcp' });
    }

    const srv = spawn(
      'nsenter',
      [
        `--net=/var/run/netns/${nsS}`,
        process.execPath,
        '-e',
        SERVER,
        JSON.stringify([...BACKENDS4, ...BACKENDS6]),
        String(PORT),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    server = srv;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('servers did not start within 10 s')), 10_000);
      srv.on('exit', (code) => reject(new Error(`servers exited (${code})`)));
      createInterface({ input: srv.stdout! }).on('line', (line) => {
        const msg = JSON.parse(line) as { ready?: boolean; proto: string; local: string; remote: string };
        if (msg.ready) {
          clearTimeout(timer);
          resolve();
        } else seen.push(msg);
      });
    });
  });

  after(async () => {
    server?.kill('SIGKILL');
    if (dp && existsSync(cgroupPath)) dp.detachSockLb(cgroupPath);
    dp?.destroy();
    await removeCgroup(cgroupPath);
    await run(['ip', 'netns', 'del', nsS], { check: false });
    await run(['ip', 'netns', 'del', nsC], { check: false });
  });

  async function client(
    netns: string,
    spec: { host: string; hosts?: string[]; port: number; proto?: 'udp'; count: number; hold?: number },
  ) {
    const r = await run(
      [
        'nsenter',
        `--net=/var/run/netns/${netns}`,
        process.execPath,
        '-e',
        CLIENT,
        cgroupPath,
        JSON.stringify(spec),
      ],
      { timeoutMs: 30_000 },
    );
    return JSON.parse(r.stdout) as Result[];
  }

  const backendsOf = (rs: Result[]) => new Set(rs.map((r) => r.backend));

  function service(
    f: Frontend,
    revNatIndex: number,
    ids: number[],
    extra: { flags?: number; active?: number; affinityTimeout?: number } = {},
  ) {
    dp!.lb.upsertService(f, { revNatIndex, ...extra }, ids);
  }

  it('attaches the eight programs once, however often it is asked', () => {
    dp!.attachSockLb(cgroupPath);
    for (const hook of Object.keys(SOCK_PROGRAMS) as (keyof typeof SOCK_PROGRAMS)[])
      assert.equal(queryCgroup({ cgroupPath, attachType: hook }).progIds.length, 1, hook);
    for (const name of SOCK_REUSED_MAPS) assert.ok(existsSync(join(pinDir, name)), `${name} is pinned`);
  });

  it('a connect to the frontend reaches a backend, and getpeername shows the frontend (IPv4, IPv6, IPv4-mapped)', async () => {
    service({ address: '10.96.0.10', port: 80, proto: 'tcp' }, 1, [1, 2, 3]);
    service({ address: 'fd00:96::10', port: 80, proto: 'tcp' }, 2, [21, 22, 23]);
    const before = seen.length;
    const v4 = await client(nsS, { host: '10.96.0.10', port: 80, count: 3 });
    const v6 = await client(nsC, { host: 'fd00:96::10', port: 80, count: 3 });
    for (const r of v4) {
      assert.deepEqual(r.peer, { address: '10.96.0.10', port: 80 });
      assert.ok(BACKENDS4.includes(r.backend ?? ''), `backend ${r.backend}`);
    }
    for (const r of v6) {
      assert.deepEqual(r.peer, { address: 'fd00:96::10', port: 80 });
      assert.ok(BACKENDS6.includes(r.backend ?? ''), `backend ${r.backend}`);
    }
    // A dual-stack IPv6 socket reaching the IPv4 frontend through its IPv4-mapped address.
    const mapped = await client(nsS, { host: '::ffff:10.96.0.10', port: 80, count: 2 });
    for (const r of mapped) {
      assert.deepEqual(r.peer, { address: '::ffff:10.96.0.10', port: 80 });
      assert.ok(BACKENDS4.includes(r.backend ?? ''), `backend ${r.backend}`);
    }
    const got = seen.slice(before).filter((s) => s.proto === 'tcp');
    assert.equal(got.length, 8, 'the servers saw every connection');
    assert.equal(
      got.filter((s) => s.remote.endsWith('fd00:99::1')).length,
      3,
      'client 2 from its own address',
    );
  });

  it('random: new connections spread over every ACTIVE backend', async () => {
    service({ address: '10.96.0.11', port: 80, proto: 'tcp' }, 3, [1, 2, 3]);
    const rs = await client(nsS, { host: '10.96.0.11', port: 80, count: 30 });
    assert.deepEqual([...backendsOf(rs)].sort(), BACKENDS4, '30 connections reach all three');
  });

  it('terminating backends get no new connections', async () => {
    service({ address: '10.96.0.12', port: 80, proto: 'tcp' }, 4, [2, 1, 3], { active: 1 });
    const rs = await client(nsS, { host: '10.96.0.12', port: 80, count: 15 });
    assert.deepEqual([...backendsOf(rs)], ['10.99.0.3']);
  });

  it('a connection made before its backend starts terminating keeps working and keeps its peer', async () => {
    const f: Frontend = { address: '10.96.0.17', port: 80, proto: 'tcp' };
    service(f, 12, [41, 42, 43]);
    const held = client(nsS, { host: '10.96.0.17', port: 80, count: 1, hold: 800 });
    const deadline = Date.now() + 5000;
    while (!seen.some((s) => s.proto === 'echo') && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    assert.ok(
      seen.some((s) => s.proto === 'echo'),
      'the held connection reached a backend',
    );
    service(f, 12, [41, 42, 43], { active: 0 });
    const [fresh] = await client(nsS, { host: '10.96.0.17', port: 80, count: 1 });
    assert.equal(fresh?.error, 'ECONNREFUSED', 'new connections are refused');
    const [r] = await held;
    assert.deepEqual(r?.peer, { address: '10.96.0.17', port: 80 });
    assert.deepEqual(r?.later, { address: '10.96.0.17', port: 80 });
    const backend = r?.replies?.[0]?.split(' ')[0] ?? '';
    assert.ok(BACKENDS4.includes(backend), `backend ${backend}`);
    assert.deepEqual(r?.replies, [`${backend} a`, `${backend} b`], 'both requests answered by one backend');
  });

  it('a second agent shares the pinned maps, and its attach replaces the programs', () => {
    const second = Datapath.open({ pinDir, policyMapMax: 1024, ctMax: 65536, maglevTableSize: 251 });
    try {
      assert.deepEqual(second.lb.listServices(), dp!.lb.listServices());
      const before = queryCgroup({ cgroupPath, attachType: 'connect4' }).progIds;
      second.attachSockLb(cgroupPath);
      for (const hook of Object.keys(SOCK_PROGRAMS) as (keyof typeof SOCK_PROGRAMS)[]) {
        const ids = queryCgroup({ cgroupPath, attachType: hook }).progIds;
        assert.equal(ids.length, 1, hook);
      }
      assert.notDeepEqual(queryCgroup({ cgroupPath, attachType: 'connect4' }).progIds, before, 'replaced');
    } finally {
      second.close();
    }
  });

  it('no ACTIVE backend: connect and sendmsg fail at once with ECONNREFUSED', async () => {
    service({ address: '10.96.0.13', port: 80, proto: 'tcp' }, 5, [1, 2], { active: 0 });
    service({ address: '10.96.0.13', port: 53, proto: 'udp' }, 6, []);
    service({ address: 'fd00:96::13', port: 80, proto: 'tcp' }, 7, []);
    const before = seen.length;
    const rs = [
      ...(await client(nsS, { host: '10.96.0.13', port: 80, count: 3 })),
      ...(await client(nsS, { host: '10.96.0.13', port: 53, proto: 'udp', count: 2 })),
      ...(await client(nsS, { host: 'fd00:96::13', port: 80, count: 2 })),
    ];
    for (const r of rs) {
      assert.equal(r.error, 'ECONNREFUSED');
      assert.ok((r.ms ?? Infinity) < 100, `refused after ${r.ms} ms`);
    }
    assert.equal(seen.length, before, 'no server saw anything');
  });

  it('UDP: sendmsg reaches one backend per socket, recvmsg shows the frontend as the source', async () => {
    service({ address: '10.96.0.14', port: 53, proto: 'udp' }, 8, [11, 12, 13]);
    service({ address: 'fd00:96::14', port: 53, proto: 'udp' }, 9, [31, 32, 33]);
    const v4 = await client(nsC, { host: '10.96.0.14', port: 53, proto: 'udp', count: 5 });
    const v6 = await client(nsS, { host: 'fd00:96::14', port: 53, proto: 'udp', count: 5 });
    for (const r of v4) assert.deepEqual(r.peer, { address: '10.96.0.14', port: 53 });
    for (const r of v6) assert.deepEqual(r.peer, { address: 'fd00:96::14', port: 53 });
    const mapped = await client(nsS, { host: '::ffff:10.96.0.14', port: 53, proto: 'udp', count: 3 });
    for (const r of mapped) assert.deepEqual(r.peer, { address: '::ffff:10.96.0.14', port: 53 });
    assert.equal(backendsOf(mapped).size, 1);
    assert.ok(BACKENDS4.includes([...backendsOf(mapped)][0] ?? ''));
    assert.equal(backendsOf(v4).size, 1, 'one unconnected socket, one backend');
    assert.ok(BACKENDS4.includes([...backendsOf(v4)][0] ?? ''));
    assert.equal(backendsOf(v6).size, 1);
    assert.ok(BACKENDS6.includes([...backendsOf(v6)][0] ?? ''));
  });

  it('UDP: one socket sending to more frontends than its storage has slots sees each reply from its frontend', async () => {
    const fronts = ['10.96.0.30', '10.96.0.31', '10.96.0.32', '10.96.0.33', '10.96.0.34', '10.96.0.35'];
    for (const [i, address] of fronts.entries())
      service({ address, port: 53, proto: 'udp' }, 30 + i, [11 + (i % 3)]);
    const rs = await client(nsC, { host: fronts[0] ?? '', hosts: fronts, port: 53, proto: 'udp', count: 12 });
    assert.deepEqual(
      rs.map((r) => r.peer),
      [...fronts, ...fronts].map((address) => ({ address, port: 53 })),
    );
    assert.deepEqual(
      rs.map((r) => r.backend),
      [...fronts, ...fronts].map((_, i) => BACKENDS4[i % 3]),
      'each frontend its backend',
    );
  });

  it('affinity: each client netns sticks to one backend, remembered in weir_lb_affinity', async () => {
    service({ address: '10.96.0.15', port: 80, proto: 'tcp' }, 10, [1, 2, 3], {
      flags: ServiceFlags.affinity,
      affinityTimeout: 600,
    });
    const s = await client(nsS, { host: '10.96.0.15', port: 80, count: 10 });
    const c = await client(nsC, { host: '10.96.0.15', port: 80, count: 10 });
    assert.equal(backendsOf(s).size, 1, `netns S: ${[...backendsOf(s)].join(' ')}`);
    assert.equal(backendsOf(c).size, 1, `netns C: ${[...backendsOf(c)].join(' ')}`);
    const remembered = dp!.lb.listAffinity().filter((a) => a.revNatIndex === 10);
    assert.equal(remembered.length, 2, 'one entry per client netns');
    const ids = { '10.99.0.2': 1, '10.99.0.3': 2, '10.99.0.4': 3 } as Record<string, number>;
    assert.deepEqual(
      remembered.map((a) => a.backendId).sort(),
      [ids[[...backendsOf(s)][0] ?? ''], ids[[...backendsOf(c)][0] ?? '']].sort(),
    );

    // The remembered backend starts terminating: the client moves to an ACTIVE one and sticks.
    const old = [...backendsOf(s)][0] ?? '';
    // Each client netns has its own entry (keyed by its netns cookie); remember who had what.
    const before = new Map(
      dp!.lb.affinity
        .lookupBatch()
        .filter(([k]) => k.revNatIndex === 10)
        .map(([k, v]) => [k.clientCookie, v.backendId]),
    );
    const rest = [1, 2, 3].filter((id) => id !== ids[old]);
    service({ address: '10.96.0.15', port: 80, proto: 'tcp' }, 10, [...rest, ids[old] ?? 0], {
      flags: ServiceFlags.affinity,
      affinityTimeout: 600,
      active: 2,
    });
    const moved = await client(nsS, { host: '10.96.0.15', port: 80, count: 6 });
    assert.equal(backendsOf(moved).size, 1);
    assert.notEqual([...backendsOf(moved)][0], old);

    // What weir_lb_affinity remembers is what the next connect uses (bpf_ktime_get_ns and
    // hrtime share CLOCK_MONOTONIC): point netns S's entry at the other ACTIVE backend.
    // Netns S's entry is the one that changed (netns C did not connect again, so its entry stays,
    // even when both happened to remember the same backend).
    const entry = dp!.lb.affinity
      .lookupBatch()
      .find(([k, v]) => k.revNatIndex === 10 && before.get(k.clientCookie) !== v.backendId);
    assert.ok(entry, 'netns S remembers the backend it moved to');
    assert.equal(entry[1].backendId, ids[[...backendsOf(moved)][0] ?? '']);
    const other = rest.find((id) => id !== entry[1].backendId) ?? 0;
    dp!.lb.affinity.update(entry[0], { lastUsedNs: process.hrtime.bigint(), backendId: other });
    const pinned = await client(nsS, { host: '10.96.0.15', port: 80, count: 4 });
    assert.deepEqual([...backendsOf(pinned)], [BACKENDS4[other - 1]]);
  });

  it('maglev: the table of the service decides', async () => {
    const f: Frontend = { address: '10.96.0.16', port: 80, proto: 'tcp' };
    service(f, 11, [1, 2, 3], { flags: ServiceFlags.maglev });
    dp!.lb.setMaglevTable(11, Array<number>(251).fill(3));
    assert.deepEqual(dp!.lb.getMaglevTable(11)?.slice(0, 3), [3, 3, 3]);
    const only = await client(nsS, { host: '10.96.0.16', port: 80, count: 12 });
    assert.deepEqual([...backendsOf(only)], ['10.99.0.4']);

    dp!.lb.setMaglevTable(
      11,
      Array.from({ length: 251 }, (_, i) => 1 + (i % 2)),
    );
    const two = await client(nsS, { host: '10.96.0.16', port: 80, count: 30 });
    assert.deepEqual([...backendsOf(two)].sort(), ['10.99.0.2', '10.99.0.3']);
    assert.throws(() => dp!.lb.setMaglevTable(11, [1, 2]), { code: 'ERR_LB_MAGLEV_SIZE' });
  });

  it('affinity with Maglev: a remembered backend wins until its timeout, then the table picks', async () => {
    const f: Frontend = { address: '10.96.0.18', port: 80, proto: 'tcp' };
    service(f, 13, [1, 2, 3], { flags: ServiceFlags.affinity | ServiceFlags.maglev, affinityTimeout: 60 });
    dp!.lb.setMaglevTable(13, Array<number>(251).fill(1));
    const first = await client(nsS, { host: '10.96.0.18', port: 80, count: 2 });
    assert.deepEqual([...backendsOf(first)], ['10.99.0.2'], 'the table picked, affinity remembers it');
    const [key] = dp!.lb.affinity.lookupBatch().find(([k]) => k.revNatIndex === 13) ?? [];
    assert.ok(key);

    dp!.lb.affinity.update(key, { lastUsedNs: process.hrtime.bigint(), backendId: 3 });
    const fresh = await client(nsS, { host: '10.96.0.18', port: 80, count: 3 });
    assert.deepEqual([...backendsOf(fresh)], ['10.99.0.4'], 'a fresh entry wins over the table');

    dp!.lb.affinity.update(key, { lastUsedNs: process.hrtime.bigint() - 61_000_000_000n, backendId: 3 });
    const expired = await client(nsS, { host: '10.96.0.18', port: 80, count: 3 });
    assert.deepEqual([...backendsOf(expired)], ['10.99.0.2'], 'an expired entry is picked anew');
    assert.equal(dp!.lb.affinity.lookup(key)?.backendId, 1, 'and rewritten');
  });

  it('destinations that are no frontend are untouched; detachSockLb stops translating', async () => {
    const direct = await client(nsC, { host: '10.99.0.3', port: PORT, count: 1 });
    assert.deepEqual(direct[0], { peer: { address: '10.99.0.3', port: PORT }, backend: '10.99.0.3' });

    dp!.detachSockLb(cgroupPath);
    for (const hook of Object.keys(SOCK_PROGRAMS) as (keyof typeof SOCK_PROGRAMS)[])
      assert.deepEqual(queryCgroup({ cgroupPath, attachType: hook }).progIds, [], hook);
    const [r] = await client(nsS, { host: '10.96.0.10', port: 80, count: 1 });
    assert.equal(r?.error, 'ENETUNREACH', 'the frontend exists nowhere without the programs');
    dp!.attachSockLb(cgroupPath);
    const [again] = await client(nsS, { host: '10.96.0.10', port: 80, count: 1 });
    assert.deepEqual(again?.peer, { address: '10.96.0.10', port: 80 });
  });
});

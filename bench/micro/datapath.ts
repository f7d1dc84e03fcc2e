// Micro-benchmark of the tc datapath: nanoseconds per packet of weir_from_container /
// weir_to_container, run by the kernel itself with BPF_PROG_TEST_RUN (the program alone, on one
// CPU, no lab traffic), so the figure does not move with the machine's load the way iperf3 does.
// Cases: the established fast path (a data segment the pod sends, the ACK it receives back) and
// the first packet of a connection (allowed: policy + conntrack entry + events; denied: policy +
// drop event), and a connection through a ClusterIP that no socket hook translated (the tc path
// rewrites every packet; BPF_PROG_TEST_RUN repeats on the same buffer, so those cases, and the
// pod-IP case they compare with, run one packet per call). With eBPF host routing (the default) a
// packet to a pod of the node runs both stages in one call: the sender's egress, then the
// destination's ingress (weir_to_local, a tail call) and bpf_redirect_peer; those cases run 60
// packets per call on a fresh frame (each run takes one off the TTL), the legacy cases (destination
// not in weir_lxc: the node's stack would route it) measure the sender's program alone, as before.
// Needs root (loads lxc.o, makes a weir-dptest-* namespace, removed at the end).
// Run: node dist/bench/micro/datapath.js [--runs 5] [--repeat 200000] [--object path/to/lxc.o]
import { RingBufferConsumer, withNetns } from '../../src/bpf/index.js';
import type { CtTuple } from '../../src/datapath/maps/ct/index.js';
import { ethernet, ipv4, tcp } from '../../src/datapath/packet/index.js';
import { LOCAL_PROGRAM, PROGRAMS } from '../../src/datapath/loader.js';
import { DatapathHarness, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT } from '../../src/datapath/test-support.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  const v = i > 0 ? Number(process.argv[i + 1]) : dflt;
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} needs a positive integer`);
  return v;
};
const runs = arg('--runs', 5);
const repeat = arg('--repeat', 200_000);
/** New-connection runs are one packet each (the entry is deleted in between): fewer of them. */
const newPackets = Math.min(repeat, 20_000);
/** Another build of lxc.o (A/B of a change); default dist/bpf/lxc.o. */
const objectArg = process.argv.indexOf('--object');
const objectPath = objectArg > 0 ? process.argv[objectArg + 1] : undefined;

const A = { ip: '10.0.0.1', identity: 1001 };
const B = { ip: '10.0.0.2', identity: 1002 };
/** Local pods in weir_lxc: what eBPF host routing delivers into. */
const C = { ip: '10.0.0.3', identity: 1003, mac: '02:aa:00:00:00:03', hostMac: '02:ee:00:00:00:03' };
const D = { ip: '10.0.0.4', identity: 1004, mac: '02:aa:00:00:00:04', hostMac: '02:ee:00:00:00:04' };
/** Packets per call of the host-routed cases: each run takes one off the TTL (64). */
const ROUTED_BATCH = 60;
const TCP = 6;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

interface Row {
  case: string;
  program: string;
  bytes: number;
  nsPerPacket: number;
}

async function main(): Promise<void> {
  const h = await DatapathHarness.create({ devices: 4, ...(objectPath ? { objectPath } : {}) });
  // The ring is drained as a real agent would: a full ring would make new connections look cheap.
  const reader = new RingBufferConsumer(h.dp.events, () => undefined);
  try {
    const a = h.addEndpoint(0, 1, A.identity);
    h.addEndpoint(1, 2, B.identity);
    h.dp.ipcache.upsert(A.ip, A.identity);
    h.dp.ipcache.upsert(B.ip, B.identity);
    // A may open TCP to B on port 80; port 81 is denied by default.
    h.dp
      .policy(1)
      .upsert({ identity: B.identity, direction: 'egress', protocol: TCP, port: 80 }, { cookie: 7 });

    // C may open TCP to D on port 80, D admits C on port 80: a pair of local pods, host-routed.
    const c = h.addEndpoint(2, 3, C.identity);
    const d = h.addEndpoint(3, 4, D.identity);
    for (const [p, ep] of [
      [C, c],
      [D, d],
    ] as const) {
      h.dp.ipcache.upsert(p.ip, p.identity);
      h.dp.lxc.set({ ip: p.ip, ifindex: ep.ifindex, mac: p.mac, hostMac: p.hostMac });
    }
    h.dp
      .policy(3)
      .upsert({ identity: D.identity, direction: 'egress', protocol: TCP, port: 80 }, { cookie: 8 });
    h.dp
      .policy(4)
      .upsert({ identity: C.identity, direction: 'ingress', protocol: TCP, port: 80 }, { cookie: 9 });

    const fromA = h.dp.program(PROGRAMS.fromContainer);
    const toA = h.dp.program(PROGRAMS.toContainer);
    const frame = (src: string, dst: string, sport: number, dport: number, flags: string, payload = 0) =>
      ethernet({
        payload: ipv4({ src, dst, payload: tcp({ sport, dport, flags, payload: Buffer.alloc(payload) }) }),
      });
    const syn = frame(A.ip, B.ip, 40000, 80, 'S');
    const data = frame(A.ip, B.ip, 40000, 80, 'PA', 1448); // one full-MSS segment
    const ack = frame(B.ip, A.ip, 80, 40000, 'A');
    const deniedSyn = frame(A.ip, B.ip, 40001, 81, 'S');
    const tuple: CtTuple = {
      family: 4,
      src: A.ip,
      dst: B.ip,
      sport: 40000,
      dport: 80,
      proto: TCP,
      direction: 'egress',
    };

    const timed = (prog: typeof fromA, pkt: Buffer, n: number, want: number, ifindex = a.ifindex) =>
      withNetns(h.netns, () => {
        const r = prog.testRun({ data: pkt, ifindex, repeat: n });
        if (r.retval !== want) throw new Error(`verdict ${r.retval}, expected ${want}`);
        return r.durationNs;
      });
    /** One packet per run, the connection's entry deleted before each: every run is a new one. */
    const timedNew = (pkt: Buffer) => {
      let total = 0;
      for (let i = 0; i < newPackets; i++) {
        h.dp.ct.delete(tuple);
        total += timed(fromA, pkt, 1, TC_ACT_OK);
        if (i % 1024 === 0) reader.drain();
      }
      reader.drain();
      return total / newPackets;
    };
    const deniedNew = () => {
      let total = 0;
      const chunk = 1024; // drop events: drain before the ring could fill
      for (let done = 0; done < newPackets; done += chunk) {
        total += timed(fromA, deniedSyn, chunk, TC_ACT_SHOT) * chunk;
        reader.drain();
      }
      return total / (Math.ceil(newPackets / chunk) * chunk);
    };

    // Through a ClusterIP translated at tc: 10.96.0.10:80 -> B:80, another client port.
    const VIP = '10.96.0.10';
    h.dp.lb.upsertBackend(1, { address: B.ip, port: 80, proto: 'tcp' });
    h.dp.lb.upsertService({ address: VIP, port: 80, proto: 'tcp' }, { revNatIndex: 1 }, [1]);
    const svcData = frame(A.ip, VIP, 40100, 80, 'PA', 1448);
    const svcAck = frame(B.ip, A.ip, 80, 40100, 'A');
    /** One packet per call (the program rewrites it in place), averaged. */
    const timedEach = (prog: typeof fromA, pkt: Buffer) => {
      let total = 0;
      for (let i = 0; i < newPackets; i++) total += timed(prog, pkt, 1, TC_ACT_OK);
      return total / newPackets;
    };

    // Host-routed: C's data segment to D (both stages), D's ACK back to C (both stages).
    const routedData = frame(C.ip, D.ip, 40200, 80, 'PA', 1448);
    const routedAck = frame(D.ip, C.ip, 80, 40200, 'A');
    /** ROUTED_BATCH packets per call, a fresh frame each call, averaged. */
    const timedRouted = (pkt: Buffer, from: number) => {
      const calls = Math.max(1, Math.floor(repeat / ROUTED_BATCH));
      let total = 0;
      for (let i = 0; i < calls; i++) total += timed(fromA, pkt, ROUTED_BATCH, TC_ACT_REDIRECT, from);
      return total / calls;
    };
    const routedNew = () => {
      const syn = frame(C.ip, D.ip, 40201, 80, 'S');
      const key = { family: 4 as const, src: C.ip, dst: D.ip, sport: 40201, dport: 80, proto: TCP };
      let total = 0;
      for (let i = 0; i < newPackets; i++) {
        h.dp.ct.delete({ ...key, direction: 'egress' });
        h.dp.ct.delete({ ...key, direction: 'ingress' });
        total += timed(fromA, syn, 1, TC_ACT_REDIRECT, c.ifindex);
        if (i % 512 === 0) reader.drain();
      }
      reader.drain();
      return total / newPackets;
    };

    const cases: { name: string; program: string; bytes: number; measure: () => number }[] = [
      {
        name: `established, host routing to a local pod: data segment, egress + ingress stage (${ROUTED_BATCH} per call)`,
        program: `${PROGRAMS.fromContainer} → ${LOCAL_PROGRAM}`,
        bytes: routedData.length,
        measure: () => timedRouted(routedData, c.ifindex),
      },
      {
        name: `established, host routing to a local pod: ACK back, egress + ingress stage (${ROUTED_BATCH} per call)`,
        program: `${PROGRAMS.fromContainer} → ${LOCAL_PROGRAM}`,
        bytes: routedAck.length,
        measure: () => timedRouted(routedAck, d.ifindex),
      },
      {
        name: 'new connection, host routing to a local pod: SYN allowed by both (2 CT entries, 4 events)',
        program: `${PROGRAMS.fromContainer} → ${LOCAL_PROGRAM}`,
        bytes: 54,
        measure: routedNew,
      },
      {
        name: 'established: data segment the pod sends',
        program: PROGRAMS.fromContainer,
        bytes: data.length,
        measure: () => timed(fromA, data, repeat, TC_ACT_OK),
      },
      {
        name: 'established: ACK the pod receives (reply)',
        program: PROGRAMS.toContainer,
        bytes: ack.length,
        measure: () => timed(toA, ack, repeat, TC_ACT_OK),
      },
      {
        name: 'established, one packet per call: data segment to the pod IP',
        program: PROGRAMS.fromContainer,
        bytes: data.length,
        measure: () => timedEach(fromA, data),
      },
      {
        name: 'established, one packet per call: data segment to a ClusterIP (tc DNAT)',
        program: PROGRAMS.fromContainer,
        bytes: svcData.length,
        measure: () => timedEach(fromA, svcData),
      },
      {
        name: 'established, one packet per call: ACK from the pod IP',
        program: PROGRAMS.toContainer,
        bytes: ack.length,
        measure: () => timedEach(toA, ack),
      },
      {
        name: 'established, one packet per call: ACK from the backend (tc reverse NAT)',
        program: PROGRAMS.toContainer,
        bytes: svcAck.length,
        measure: () => timedEach(toA, svcAck),
      },
      {
        name: 'new connection: SYN allowed (policy, CT entry, 2 events)',
        program: PROGRAMS.fromContainer,
        bytes: syn.length,
        measure: () => timedNew(syn),
      },
      {
        name: 'new connection: SYN denied (policy, 2 events)',
        program: PROGRAMS.fromContainer,
        bytes: deniedSyn.length,
        measure: deniedNew,
      },
    ];

    // The established cases need the connection: opened by the SYN, answered by B.
    h.dp.ct.flush();
    timed(fromA, syn, 1, TC_ACT_OK);
    timed(toA, frame(B.ip, A.ip, 80, 40000, 'SA'), 1, TC_ACT_OK);
    timed(fromA, frame(A.ip, VIP, 40100, 80, 'S'), 1, TC_ACT_OK);
    timed(toA, frame(B.ip, A.ip, 80, 40100, 'SA'), 1, TC_ACT_OK);
    timed(fromA, frame(C.ip, D.ip, 40200, 80, 'S'), 1, TC_ACT_REDIRECT, c.ifindex);
    timed(fromA, frame(D.ip, C.ip, 80, 40200, 'SA'), 1, TC_ACT_REDIRECT, d.ifindex);
    reader.drain();

    const rows: Row[] = [];
    for (const c of cases) {
      c.measure(); // warm-up: caches, branch predictors, the LRU's per-CPU lists
      const samples = Array.from({ length: runs }, () => c.measure());
      rows.push({ case: c.name, program: c.program, bytes: c.bytes, nsPerPacket: median(samples) });
      if (c.name.startsWith('established')) {
        // Every established run must have been a conntrack hit, not a new connection.
        if (h.dp.ct.get(tuple) === undefined) throw new Error('the established connection is gone');
      }
    }
    // The policy size: D's ingress admits C plus N−1 CIDR identities (/32s of 100.64.0.0/10 in the
    // ipcache), as the bench's "weir N" scenarios; the host-routed cases again at each size.
    // Established packets look nothing up by policy; a new connection does two LPM lookups in the
    // policy map and one in the ipcache (per stage).
    const sized = cases.filter((c) => c.program.includes(LOCAL_PROGRAM));
    let entries = 1;
    for (const n of [1000, 10_000]) {
      for (; entries < n; entries++) {
        const ip = `100.${64 + (entries >> 16)}.${(entries >> 8) & 255}.${entries & 255}`;
        h.dp.ipcache.upsert(`${ip}/32`, 100_000 + entries);
        h.dp
          .policy(4)
          .upsert(
            { identity: 100_000 + entries, direction: 'ingress', protocol: TCP, port: 80 },
            { cookie: 10 },
          );
      }
      for (const c of sized) {
        c.measure();
        const samples = Array.from({ length: runs }, () => c.measure());
        rows.push({
          case: `${c.name}; ${n} policy entries, ${n - 1} CIDR prefixes`,
          program: c.program,
          bytes: c.bytes,
          nsPerPacket: median(samples),
        });
      }
    }
    // ... and every packet to the ClusterIP was one of the translated connection.
    const svc = h.dp.ct.list().find((e) => e.sport === 40100 && e.dst === B.ip);
    if (!svc?.revNatIndex || svc.packetsFwd <= BigInt(newPackets))
      throw new Error('the connection through the ClusterIP is not a translated, established one');
    print(rows);
  } finally {
    reader.close();
    await h.destroy();
  }
}

function print(rows: Row[]): void {
  const header = ['case', 'program', 'frame bytes', 'ns/packet'];
  const body = rows.map((r) => [r.case, r.program, String(r.bytes), r.nsPerPacket.toFixed(1)]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i >= 2 ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join('  ');
  console.log(`weir datapath micro-benchmark: BPF_PROG_TEST_RUN, median of ${runs} runs`);
  console.log(`(established: ${repeat} packets per run; new connections: ${newPackets} per run)\n`);
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const b of body) console.log(line(b));
}

await main();

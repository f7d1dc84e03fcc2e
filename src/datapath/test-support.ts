// Datapath test harness (privileged tests only): lxc.o loaded without pins, endpoints on veth
// devices in a private weir-dptest-* network namespace, packets run through the real programs
// with BPF_PROG_TEST_RUN.
//
// Why a namespace: for tc programs the kernel's test run takes __sk_buff.ifindex from ctx_in
// and attaches the skb to that device, which must exist in the caller's network namespace
// (ENODEV otherwise; without ctx_in it is the loopback, ifindex 1). skb->ifindex is what the
// programs look endpoints up by, so each test endpoint is a real (veth) device in a namespace
// of our own, and runs happen inside it (withNetns), never touching the root namespace.
import { randomBytes } from 'node:crypto';
import { ifindexIn, skbContext, SKB_CONTEXT_OFFSETS, withNetns } from '../bpf/index.js';
import { run } from '../shared/exec.js';
import {
  Datapath,
  HOST_PROGRAM,
  NETDEV_PROGRAM,
  OVERLAY_PROGRAMS,
  PROGRAMS,
  type DatapathOptions,
} from './loader.js';
import type { Direction } from './direction.js';

export const TC_ACT_OK = 0;
export const TC_ACT_SHOT = 2;
export const TC_ACT_REDIRECT = 7;

/** Two pods of one node for the host-routing and stage tests: addresses, identity, the pod's MAC and
 * its host veth's. */
export const POD_A = {
  v4: '10.0.0.1',
  v6: 'fd00::1',
  identity: 1001,
  mac: '02:aa:00:00:00:01',
  hostMac: '02:ee:00:00:00:01',
};
export const POD_B = {
  v4: '10.0.0.2',
  v6: 'fd00::2',
  identity: 1002,
  mac: '02:aa:00:00:00:02',
  hostMac: '02:ee:00:00:00:02',
};

/** A run of any of lxc.o's tc programs, with what it left in the skb. */
export interface RawRunResult {
  retval: number;
  /** skb->mark as the program left it. */
  mark: number;
  /** The drop code counted in weir_metrics (0: forwarded), undefined when nothing was counted. */
  reason?: number;
  data: Buffer;
}

export interface TestEndpoint {
  ifindex: number;
  endpointId: number;
  identity: number;
}

export interface RunResult {
  verdict: 'forward' | 'drop';
  /** REASON_FORWARDED (0) or the drop code counted in weir_metrics for this packet. */
  reason: number;
  direction: Direction;
  /** The packet as it left the program. */
  data: Buffer;
}

export class DatapathHarness {
  readonly netns: string;
  readonly dp: Datapath;
  readonly #ifindexes: number[];

  private constructor(netns: string, dp: Datapath, ifindexes: number[]) {
    this.netns = netns;
    this.dp = dp;
    this.#ifindexes = ifindexes;
  }

  /**
   * A namespace with `devices` veth devices and a freshly loaded, unpinned datapath; `hostSlot`
   * names the device that stands in for the node's weir_host (DatapathOptions.hostIfindex).
   */
  static async create(
    opts: DatapathOptions & { devices?: number; hostSlot?: number } = {},
  ): Promise<DatapathHarness> {
    const netns = `weir-dptest-${randomBytes(3).toString('hex')}`;
    await run(['ip', 'netns', 'add', netns]);
    try {
      const ifindexes: number[] = [];
      for (let i = 0; i < (opts.devices ?? 3); i++) {
        await run([
          'ip',
          '-n',
          netns,
          'link',
          'add',
          `weirdp${i}`,
          'type',
          'veth',
          'peer',
          'name',
          `weirdq${i}`,
        ]);
        ifindexes.push(ifindexIn(netns, `weirdp${i}`));
      }
      const host = opts.hostSlot === undefined ? {} : { hostIfindex: ifindexes[opts.hostSlot] };
      return new DatapathHarness(netns, Datapath.open({ ...opts, ...host }), ifindexes);
    } catch (err) {
      await run(['ip', 'netns', 'del', netns], { check: false });
      throw err;
    }
  }

  /** Device `slot` becomes endpoint `endpointId` with `identity`, with an empty policy map. */
  addEndpoint(slot: number, endpointId: number, identity: number, flags = 0): TestEndpoint {
    const ifindex = this.#ifindexes[slot];
    if (ifindex === undefined) throw new Error(`no test device ${slot}`);
    this.dp.ensurePolicyMap(endpointId);
    this.dp.endpoints.set(ifindex, { endpointId, identity, flags });
    return { ifindex, endpointId, identity };
  }

  ifindex(slot: number): number {
    const ifindex = this.#ifindexes[slot];
    if (ifindex === undefined) throw new Error(`no test device ${slot}`);
    return ifindex;
  }

  /**
   * Runs `frame` through the pod's egress (weir_from_container) or ingress (weir_to_container)
   * program as if it crossed device `ifindex`, and reads the one metrics entry it produced.
   */
  run(hook: 'egress' | 'ingress', ifindex: number, frame: Buffer): RunResult {
    const prog = this.dp.program(hook === 'egress' ? PROGRAMS.fromContainer : PROGRAMS.toContainer);
    this.dp.metrics.clear();
    const res = withNetns(this.netns, () => prog.testRun({ data: frame, ifindex }));
    const counted = this.dp.metrics.list();
    if (counted.length !== 1 || counted[0]?.packets !== 1n) {
      const seen = counted.map((c) => `${c.reason}/${c.direction}: ${c.packets}`).join(', ');
      throw new Error(`expected one counted packet, weir_metrics holds [${seen}]`);
    }
    const [m] = counted;
    if (res.retval !== TC_ACT_OK && res.retval !== TC_ACT_SHOT)
      throw new Error(`unexpected tc verdict ${res.retval}`);
    const verdict = res.retval === TC_ACT_OK ? 'forward' : 'drop';
    if ((verdict === 'forward') !== (m?.reason === 0))
      throw new Error(`verdict ${verdict} but reason ${m?.reason}`);
    return { verdict, reason: m?.reason ?? -1, direction: m?.direction ?? 'egress', data: res.data };
  }

  /**
   * Runs `frame` through `prog` (a pod hook, weir_to_proxy, weir_from_netdev, or the VXLAN device's
   * weir_from_overlay / weir_to_overlay) on device
   * `ifindex` with skb->mark `mark`; any verdict is returned as it is (also TC_ACT_REDIRECT).
   */
  runRaw(
    prog: 'egress' | 'ingress' | 'to-proxy' | 'netdev' | 'from-overlay' | 'to-overlay',
    ifindex: number,
    frame: Buffer,
    mark = 0,
  ): RawRunResult {
    const name = (
      {
        egress: PROGRAMS.fromContainer,
        ingress: PROGRAMS.toContainer,
        'to-proxy': HOST_PROGRAM,
        netdev: NETDEV_PROGRAM,
        'from-overlay': OVERLAY_PROGRAMS.fromOverlay,
        'to-overlay': OVERLAY_PROGRAMS.toOverlay,
      } as const
    )[prog];
    this.dp.metrics.clear();
    const res = withNetns(this.netns, () =>
      this.dp.program(name).testRun({ data: frame, ctxIn: skbContext({ ifindex, mark }) }),
    );
    const counted = this.dp.metrics.list();
    if (counted.length > 1 || (counted[0] && counted[0].packets !== 1n))
      throw new Error(`expected at most one counted packet, weir_metrics holds ${counted.length} keys`);
    return {
      retval: res.retval,
      mark: res.ctxOut?.readUInt32LE(SKB_CONTEXT_OFFSETS.mark) ?? 0,
      ...(counted[0] ? { reason: counted[0].reason } : {}),
      data: res.data,
    };
  }

  async destroy(): Promise<void> {
    this.dp.close();
    await run(['ip', 'netns', 'del', this.netns], { check: false });
  }
}

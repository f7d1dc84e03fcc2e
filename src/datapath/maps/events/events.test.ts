// The flow_event decoder and the constants mirrored from bpf/lib/common.h (no privileges).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../../../shared/paths.js';
import { EventFlag, EventType, FlowEventLayout, TraceType, decodeFlowEvent } from './index.js';

const header = readFileSync(join(repoRoot, 'bpf', 'lib', 'common.h'), 'utf8');
function defines(prefix: string): Map<string, number> {
  const out = new Map<string, number>();
  const re = new RegExp(`^#define ${prefix}(\\w+)\\s+(?:\\(1U << (\\d+)\\)|(\\d+))`, 'gm');
  for (const m of header.matchAll(re)) out.set(m[1] ?? '', m[2] ? 1 << Number(m[2]) : Number(m[3]));
  return out;
}

const raw = (over: Partial<ReturnType<typeof FlowEventLayout.decode>> = {}) => {
  const buf = Buffer.alloc(FlowEventLayout.size);
  const saddr = Buffer.alloc(16);
  const daddr = Buffer.alloc(16);
  Buffer.from([10, 0, 0, 1]).copy(saddr);
  Buffer.from([10, 0, 0, 2]).copy(daddr);
  FlowEventLayout.encode(
    {
      type: EventType.TRACE,
      subtype: TraceType.CLOSE,
      direction: 2,
      reason: 0,
      family: 4,
      nexthdr: 6,
      flags: EventFlag.REPLY,
      tcpFlags: 0x11,
      ifindex: 7,
      endpointId: 3,
      srcIdentity: 1002,
      dstIdentity: 1001,
      cookie: 42,
      len: 54,
      saddr,
      daddr,
      sport: 80,
      dport: 40000,
      proxyPort: 0,
      ktimeNs: 123n,
      packetsFwd: 4n,
      bytesFwd: 300n,
      packetsRev: 3n,
      bytesRev: 2n ** 40n,
      ...over,
    },
    buf,
    0,
  );
  return buf;
};

describe('flow events', () => {
  it('mirrors EVENT_*, TRACE_* and EVENT_F_* of bpf/lib/common.h', () => {
    const ev = defines('EVENT_');
    const flags = new Map([...ev].filter(([k]) => k.startsWith('F_')).map(([k, v]) => [k.slice(2), v]));
    const types = new Map([...ev].filter(([k]) => !k.startsWith('F_')));
    assert.deepEqual(types, new Map(Object.entries(EventType)));
    assert.deepEqual(flags, new Map(Object.entries(EventFlag)));
    assert.deepEqual(defines('TRACE_'), new Map(Object.entries(TraceType)));
    assert.equal(FlowEventLayout.size, 112);
  });

  it('decodes a record', () => {
    const e = decodeFlowEvent(raw());
    assert.deepEqual(e, {
      type: 'trace',
      trace: 'close',
      direction: 'egress',
      reason: 0,
      family: 4,
      proto: 6,
      reply: true,
      related: false,
      flags: EventFlag.REPLY,
      tcpFlags: 0x11,
      ifindex: 7,
      endpointId: 3,
      srcIdentity: 1002,
      dstIdentity: 1001,
      cookie: 42,
      len: 54,
      src: '10.0.0.1',
      dst: '10.0.0.2',
      sport: 80,
      dport: 40000,
      ktimeNs: 123n,
      packetsFwd: 4n,
      bytesFwd: 300n,
      packetsRev: 3n,
      bytesRev: 2n ** 40n,
    });
  });

  it('decodes a drop before parsing (no addresses) and IPv6', () => {
    const early = decodeFlowEvent(raw({ type: EventType.DROP, subtype: 0, family: 0, reason: 203 }));
    assert.equal(early.type, 'drop');
    assert.equal(early.trace, undefined);
    assert.equal(early.src, undefined);
    const d = Buffer.alloc(16);
    d[15] = 2;
    d[0] = 0xfd;
    const v6 = decodeFlowEvent(raw({ type: EventType.POLICY_VERDICT, family: 6, daddr: d }));
    assert.equal(v6.dst, 'fd00::2');
  });

  it('decodes a redirect to the node proxy and a packet the proxy sent', () => {
    const r = decodeFlowEvent(
      raw({ type: EventType.POLICY_VERDICT, subtype: 0, flags: EventFlag.TO_PROXY, proxyPort: 10000 }),
    );
    assert.equal(r.toProxy, true);
    assert.equal(r.proxyPort, 10000);
    assert.equal(r.fromProxy, undefined);
    const f = decodeFlowEvent(raw({ flags: EventFlag.FROM_PROXY, proxyPort: 0 }));
    assert.equal(f.fromProxy, true);
    assert.equal(f.toProxy, undefined);
  });

  it('rejects records that are not flow events', () => {
    assert.throws(() => decodeFlowEvent(Buffer.alloc(16)), { code: 'ERR_DATAPATH_EVENT' });
    assert.throws(() => decodeFlowEvent(raw({ type: 9 })), { code: 'ERR_DATAPATH_EVENT' });
    assert.throws(() => decodeFlowEvent(raw({ subtype: 7 })), { code: 'ERR_DATAPATH_EVENT' });
    assert.throws(() => decodeFlowEvent(raw({ direction: 0 })), { code: 'ERR_DATAPATH_EVENT' });
    assert.throws(() => decodeFlowEvent(raw({ family: 5 })), { code: 'ERR_DATAPATH_EVENT' });
  });
});

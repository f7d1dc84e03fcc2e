// Every TypeScript mirror of a bpf/lib/common.h struct against the compiled object's BTF (size
// and each field's offset and size). Needs dist/bpf/lxc.o and sock.o (make bpf), no privileges.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { checkLayout, cstruct, pad, u32 } from '../../bpf/index.js';
import { bpfObject } from '../../shared/paths.js';
import { AuthInfo, AuthKey } from './auth/layout.js';
import { CtEntry, CtKey } from './ct/layout.js';
import { EndpointInfo } from './endpoints/layout.js';
import { FlowEventLayout } from './events/layout.js';
import { FragKey, FragPorts } from './frag/layout.js';
import { IpcacheKey, IpcacheValue } from './ipcache/layout.js';
import { LbAffinityKey, LbAffinityValue, LbBackend, LbKey, LbRevnat, LbService } from './lb/layout.js';
import { LxcInfo, LxcKey } from './lxc/layout.js';
import { MetricsValue } from './metrics/layout.js';
import { PolicyEntry, PolicyKey } from './policy/layout.js';
import { TunnelConfig } from './tunnel/layout.js';

const lxc = bpfObject('lxc');
const sock = bpfObject('sock');

describe('map layouts match dist/bpf/lxc.o', () => {
  const codecs = [
    IpcacheKey,
    IpcacheValue,
    EndpointInfo,
    PolicyKey,
    PolicyEntry,
    CtKey,
    CtEntry,
    FragKey,
    FragPorts,
    MetricsValue,
    FlowEventLayout,
    LxcKey,
    LxcInfo,
    AuthKey,
    AuthInfo,
    TunnelConfig,
  ];
  for (const codec of codecs) {
    it(`struct ${codec.name}`, () => checkLayout(codec, lxc, codec.name));
  }

  it('notices a mirror that drifted', () => {
    const wrong = cstruct('endpoint_info', { identity: u32(), endpointId: u32(), flags: u32(), pad: pad(4) });
    assert.throws(() => checkLayout(wrong, lxc, 'endpoint_info'), { code: 'ERR_BPF_LAYOUT' });
  });
});

describe('service LB layouts match dist/bpf/sock.o', () => {
  for (const codec of [LbKey, LbService, LbBackend, LbRevnat, LbAffinityKey, LbAffinityValue]) {
    it(`struct ${codec.name}`, () => checkLayout(codec, sock, codec.name));
  }
});

// The node's VXLAN device (vxlan.ts) in a namespace of its own: created in external mode on port
// 8472 with ARP off, found again (same ifindex), a device of that name of another kind refused,
// removed.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { run } from '../shared/exec.js';
import { ensureVxlan, removeVxlan, VXLAN_PORT, vxlanDevice } from './vxlan.js';
import { testLab } from '../../test/support/lab-name.js';

const ns = `weir-${testLab('vxdev')}`;

const link = async (name: string) => {
  const out = (await run(['ip', '-n', ns, '-d', '-j', 'link', 'show', 'dev', name], { check: false })).stdout;
  return (
    JSON.parse(out || '[]') as {
      flags: string[];
      linkinfo?: { info_kind?: string; info_data?: { external?: boolean; port?: number } };
    }[]
  )[0];
};

describe('the node VXLAN device', () => {
  before(async () => {
    await run(['ip', 'netns', 'add', ns]);
  });
  after(async () => {
    await run(['ip', 'netns', 'del', ns], { check: false });
  });

  it('is created in external mode on 8472, without ARP, up; and found again', async () => {
    const ifindex = await ensureVxlan(ns);
    const l = await link(vxlanDevice);
    assert.equal(l?.linkinfo?.info_kind, 'vxlan');
    assert.equal(l?.linkinfo?.info_data?.external, true);
    assert.equal(l?.linkinfo?.info_data?.port, VXLAN_PORT);
    assert.ok(l?.flags.includes('NOARP'));
    assert.ok(l?.flags.includes('UP'));
    assert.equal(await ensureVxlan(ns), ifindex, 'idempotent');
    await removeVxlan(ns);
    assert.equal(await link(vxlanDevice), undefined);
    await removeVxlan(ns); // gone: not an error
  });

  it('refuses a device of that name that is not an external VXLAN device', async () => {
    await run(['ip', '-n', ns, 'link', 'add', 'weirvxd', 'type', 'veth', 'peer', 'name', 'weirvxe']);
    await assert.rejects(ensureVxlan(ns, { name: 'weirvxd' }), /not a VXLAN device in external mode/);
  });
});

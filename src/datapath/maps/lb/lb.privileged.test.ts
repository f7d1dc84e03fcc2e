// LbMaps over the real maps of dist/bpf/sock.o (no pins): what the control plane writes is what
// the datapath reads, and bad input changes nothing.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Datapath } from '../../loader.js';
import { ServiceFlags } from './layout.js';
import type { Frontend } from './index.js';

describe('LbMaps', () => {
  let dp: Datapath;
  const f: Frontend = { address: '10.96.0.1', port: 443, proto: 'tcp' };

  before(() => {
    dp = Datapath.open({ policyMapMax: 1024, ctMax: 65536, maglevTableSize: 251 });
    dp.lb.upsertBackend(1, { address: '10.0.1.1', port: 6443, proto: 'tcp' });
    dp.lb.upsertBackend(2, { address: '10.0.1.2', port: 6443, proto: 'tcp', state: 'terminating' });
    dp.lb.upsertBackend(3, { address: 'fd00::3', port: 6443, proto: 'tcp' });
  });
  after(() => dp?.close());

  it('writes slot 0, one slot per backend and the rev-NAT entry; lists them back', () => {
    dp.lb.upsertService(
      f,
      { revNatIndex: 7, flags: ServiceFlags.affinity, affinityTimeout: 30, active: 1 },
      [1, 2],
    );
    const key = {
      addr: Buffer.from([10, 96, 0, 1, ...Array<number>(12).fill(0)]),
      dport: 443,
      proto: 6,
      family: 4,
      scope: 0,
    };
    assert.deepEqual(dp.lb.services.lookup({ ...key, backendSlot: 0 }), {
      backendId: 30,
      count: 2,
      revNatIndex: 7,
      active: 1,
      flags: ServiceFlags.affinity,
    });
    assert.equal(dp.lb.services.lookup({ ...key, backendSlot: 2 })?.backendId, 2);
    assert.deepEqual(dp.lb.listServices(), [
      {
        frontend: { ...f, scope: 'ext' },
        meta: { revNatIndex: 7, flags: ServiceFlags.affinity, affinityTimeout: 30, active: 1 },
        backendIds: [1, 2],
      },
    ]);
    assert.equal(dp.lb.revnat.lookup(7)?.port, 443);
    assert.deepEqual(dp.lb.getBackend(2), {
      address: '10.0.1.2',
      port: 6443,
      proto: 'tcp',
      family: 4,
      state: 'terminating',
    });
  });

  it('a shrunk service loses its stale slots; deleteService removes every slot', () => {
    dp.lb.upsertService(f, { revNatIndex: 7 }, [2]);
    assert.deepEqual(dp.lb.getService(f)?.backendIds, [2]);
    assert.equal(dp.lb.services.lookupBatch().length, 2, 'slot 0 and slot 1');
    assert.equal(dp.lb.deleteService(f), true);
    assert.equal(dp.lb.services.lookupBatch().length, 0);
    assert.equal(dp.lb.revnat.lookup(7), undefined);
    assert.equal(dp.lb.deleteService(f), false);
  });

  it('refuses unknown backends, other families and bad fields without writing anything', () => {
    assert.throws(() => dp.lb.upsertService(f, { revNatIndex: 8 }, [1, 99]), {
      code: 'ERR_LB_BACKEND_UNKNOWN',
    });
    assert.throws(() => dp.lb.upsertService(f, { revNatIndex: 8 }, [3]), { code: 'ERR_LB_BACKEND_FAMILY' });
    assert.throws(() => dp.lb.upsertService(f, { revNatIndex: 0 }, [1]), { code: 'ERR_LB_FIELD' });
    assert.throws(() => dp.lb.upsertService(f, { revNatIndex: 8, active: 3 }, [1]), { code: 'ERR_LB_FIELD' });
    assert.throws(() => dp.lb.upsertService({ ...f, address: '10.96.0' }, { revNatIndex: 8 }, [1]), {
      code: 'ERR_DATAPATH_ADDRESS',
    });
    assert.throws(() => dp.lb.upsertBackend(4, { address: '10.0.1.4', port: 0, proto: 'tcp' }), {
      code: 'ERR_LB_FIELD',
    });
    assert.equal(dp.lb.services.lookupBatch().length, 0);
    assert.equal(dp.lb.revnat.lookupBatch().length, 0);
  });

  it('Maglev tables have exactly the configured size and round-trip', () => {
    const table = Array.from({ length: 251 }, (_, i) => 1 + (i % 3));
    dp.lb.setMaglevTable(5, table);
    assert.deepEqual(dp.lb.getMaglevTable(5), table);
    assert.throws(() => dp.lb.setMaglevTable(5, table.slice(1)), { code: 'ERR_LB_MAGLEV_SIZE' });
    assert.throws(() => dp.lb.setMaglevTable(5, [0, ...table.slice(1)]), { code: 'ERR_LB_FIELD' });
    assert.deepEqual(dp.lb.getMaglevTable(5), table, 'a refused table leaves the old one');
    assert.equal(dp.lb.deleteMaglevTable(5), true);
    assert.equal(dp.lb.getMaglevTable(5), undefined);
  });

  it('Datapath.open refuses a Maglev size Cilium does not offer', () => {
    assert.throws(() => Datapath.open({ maglevTableSize: 1000 }), { code: 'ERR_DATAPATH_CONFIG' });
  });
});

// The agent's LB writer over real (unpinned) lb maps: what the model computes lands in the maps,
// a second regeneration writes nothing, a change writes only what it touches, a restart (a new
// writer over the same maps) reads back and writes nothing, removals leave no stale entry.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { Datapath } from '../datapath/loader.js';
import type { DesiredObject } from '../cluster/objects.js';
import type { AgentPod } from './agent.js';
import { ServiceLb, type LbSettings } from './lb.js';

const settings: LbSettings = {
  lbAlgorithm: 'maglev',
  maglevTableSize: 251,
  maglevSeed: 'JLfvgnHc2kaSUFaI',
  serviceCIDR: '10.96.0.0/16',
};
const log = pino({ level: 'silent' });
const node = { name: 'node1', ip: '10.244.0.1' };

const pod = (name: string, ip: string, extra: Partial<AgentPod> = {}): AgentPod =>
  ({
    namespace: 'x',
    name,
    labels: { app: 'web' },
    ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
    node: 'node1',
    ip,
    noWorkload: true,
    ready: true,
    ...extra,
  }) as AgentPod;

const lab = (...pods: AgentPod[]) => pods;

const service: DesiredObject = {
  apiVersion: 'v1',
  kind: 'Service',
  namespace: 'x',
  name: 'web',
  object: {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'web', namespace: 'x' },
    spec: {
      selector: { app: 'web' },
      clusterIP: '10.96.0.10',
      ports: [
        { name: 'http', port: 80, targetPort: 'http' },
        { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353 },
      ],
    },
  },
};

describe('agent LB writer', () => {
  let dp: Datapath;
  before(() => {
    dp = Datapath.open({ maglevTableSize: 251 });
  });
  after(() => dp?.close());

  it('writes the model, then only changes; a restarted writer writes nothing', () => {
    const lb = new ServiceLb(settings, dp, log);
    const ids = { backends: {}, revNat: {} };
    const first = lb.regenerate([service], lab(pod('a', '10.244.0.2'), pod('b', '10.244.0.3')), node, ids);
    // 4 backends (2 pods x TCP, UDP), 2 Maglev tables, 2 services.
    assert.deepEqual(first.stats, { upserts: 8, deletes: 0 });
    const listed = dp.lb.listServices();
    assert.deepEqual(
      listed.map((e) => [
        e.frontend.address,
        e.frontend.port,
        e.frontend.proto,
        e.backendIds.length,
        e.meta.active,
      ]),
      first.output.frontends.map((f) => [f.address, f.port, f.protocol.toLowerCase(), 2, 2]),
    );
    const http = first.output.frontends.find((f) => f.port === 80);
    assert.ok(http);
    assert.equal(dp.lb.getMaglevTable(http.revNatIndex)?.length, 251);

    const again = lb.regenerate(
      [service],
      lab(pod('a', '10.244.0.2'), pod('b', '10.244.0.3')),
      node,
      first.output.ids,
    );
    assert.deepEqual(again.stats, { upserts: 0, deletes: 0 });

    // b terminates: its 2 backends change state; both services and both tables change.
    const term = lb.regenerate(
      [service],
      lab(pod('a', '10.244.0.2'), pod('b', '10.244.0.3', { terminating: true })),
      node,
      first.output.ids,
    );
    assert.deepEqual(term.stats, { upserts: 6, deletes: 0 });
    const svc = dp.lb.getService({ address: '10.96.0.10', port: 80, proto: 'tcp' });
    assert.equal(svc?.meta.active, 1);
    assert.equal(dp.lb.getBackend(svc?.backendIds[1] ?? 0)?.state, 'terminating');
    assert.ok(dp.lb.getMaglevTable(http.revNatIndex)?.every((id) => id === svc?.backendIds[0]));

    const restarted = new ServiceLb(settings, dp, log);
    const same = restarted.regenerate(
      [service],
      lab(pod('a', '10.244.0.2'), pod('b', '10.244.0.3', { terminating: true })),
      node,
      term.output.ids,
    );
    assert.deepEqual(same.stats, { upserts: 0, deletes: 0 });

    // The service goes: frontends, tables and backends are removed.
    const gone = restarted.regenerate([], lab(pod('a', '10.244.0.2')), node, term.output.ids);
    assert.deepEqual(gone.stats, { upserts: 0, deletes: 8 });
    assert.deepEqual(dp.lb.listServices(), []);
    assert.deepEqual(dp.lb.listBackends(), []);
    assert.equal(dp.lb.getMaglevTable(http.revNatIndex), undefined);
  });
});

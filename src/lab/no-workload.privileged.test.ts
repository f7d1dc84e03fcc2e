// Pods annotated weir.dev/workload: "none": real netns and veth, no workload process.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseManifests } from '../k8s/index.js';
import { ValidationError } from '../shared/errors.js';
import { Lab, probe } from './index.js';
import { netnsExists } from './netns.js';
import { testLab } from '../../test/support/lab-name.js';

const LAB = testLab('t-noworkload');
const pod = (name: string, annotation: string) =>
  parseManifests(
    `apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: default${annotation}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
`,
    `${name}.yaml`,
  );
const none = ', annotations: {weir.dev/workload: none}';

describe('lab: pods without workload', () => {
  let lab: Lab;
  before(async () => {
    lab = await Lab.open(LAB);
    await lab.down();
    await lab.up();
  });
  after(async () => {
    await lab.down();
  });

  it('creates the pod (netns, veth, route, state) but starts no process', async () => {
    await lab.apply([...pod('idle', none), ...pod('busy', '')]);
    const state = await lab.requireState();
    const idle = state.pods['default/idle'];
    assert.equal(idle?.noWorkload, true);
    assert.equal(idle.workload, undefined);
    assert.ok(netnsExists(idle.netns));
    assert.ok(state.pods['default/busy']?.workload?.pid);
    assert.equal((await lab.pod('idle')).ready, true);
    // The busy pod reaches the idle one over both veths, and nothing listens there: refused, not
    // timed out, so the plumbing is real and no workload serves.
    const r = await probe(lab, 'default/busy', { ip: idle.ip, port: 80, protocol: 'TCP' }, 2000);
    assert.equal(r.ok, false);
    assert.equal(r.error, 'ECONNREFUSED');
  });

  it('refuses to switch a pod between with and without workload', async () => {
    await assert.rejects(lab.apply(pod('idle', '')), (err: unknown) => {
      assert.ok(err instanceof ValidationError);
      assert.equal(err.problems[0]?.code, 'ERR_LAB_WORKLOAD_IMMUTABLE');
      assert.equal(err.problems[0]?.location.file, 'idle.yaml');
      return true;
    });
    assert.equal((await lab.requireState()).pods['default/idle']?.noWorkload, true);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ValidationError } from '../shared/errors.js';
import { parseManifests, podRunsWorkload, type Manifest, type Pod } from './index.js';

const pod = (annotations: string) =>
  parseManifests(
    `apiVersion: v1
kind: Pod
metadata:
  name: p
  namespace: x
${annotations}
spec: {containers: [{name: c}]}
`,
    'pods.yaml',
  )[0] as Manifest<Pod>;

describe('pod workload annotation', () => {
  it('runs a workload unless weir.dev/workload is "none"', () => {
    assert.equal(podRunsWorkload(pod('').object), true);
    assert.equal(podRunsWorkload(pod('  annotations: {other: none}').object), true);
    assert.equal(podRunsWorkload(pod('  annotations: {weir.dev/workload: none}').object), false);
  });

  it('rejects any other value, naming file, object and field', () => {
    assert.throws(
      () => pod('  annotations: {weir.dev/workload: "yes"}'),
      (err: unknown) => {
        assert.ok(err instanceof ValidationError);
        const p = err.problems[0];
        assert.equal(p?.code, 'ERR_K8S_ANNOTATION_INVALID');
        assert.equal(p?.location.file, 'pods.yaml');
        assert.match(p?.location.object ?? '', /x\/p/);
        assert.equal(p?.location.field, 'metadata.annotations["weir.dev/workload"]');
        return true;
      },
    );
  });
});

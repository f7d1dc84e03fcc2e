import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseManifests } from './manifest.js';
import { manifestRef, namespaceProblems } from './namespaces.js';

const where = (errs: ReturnType<typeof namespaceProblems>) => errs.map((e) => [e.code, e.toString()]);

describe('namespaces must exist', () => {
  it('refuses a namespaced object whose namespace neither exists nor comes along, naming file, object, field', () => {
    const errs = namespaceProblems(
      [
        { kind: 'CiliumNetworkPolicy', namespace: 'nowhere', name: 'p', file: 'a.yaml' },
        { kind: 'Service', namespace: 'gone', name: 'web', file: 'b.yaml' },
        { kind: 'NetworkPolicy', namespace: 'x', name: 'ok', file: 'a.yaml' },
      ],
      ['default', 'x'],
    );
    assert.deepEqual(where(errs), [
      [
        'ERR_K8S_NAMESPACE_NOT_FOUND',
        'a.yaml: CiliumNetworkPolicy nowhere/p: metadata.namespace: namespaces "nowhere" not found',
      ],
      [
        'ERR_K8S_NAMESPACE_NOT_FOUND',
        'b.yaml: Service gone/web: metadata.namespace: namespaces "gone" not found',
      ],
    ]);
  });

  it('accepts a namespace that comes in the same apply, in any order, and cluster-scoped objects', () => {
    assert.deepEqual(
      namespaceProblems(
        [
          { kind: 'EndpointSlice', namespace: 'new', name: 'web-1' },
          { kind: 'Namespace', name: 'new' },
          { kind: 'CiliumClusterwideNetworkPolicy', name: 'all' },
        ],
        [],
      ),
      [],
    );
  });

  it('a namespace name on a namespaced object does not create the namespace', () => {
    // Only a Namespace object does: a Pod named "new" in namespace "new" does not make "new" exist.
    const errs = namespaceProblems([{ kind: 'Pod', namespace: 'new', name: 'new' }], []);
    assert.equal(errs.length, 1);
  });

  it('manifests: the loader fills in the default namespace, which must exist too', () => {
    const ms = parseManifests(
      [
        'apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c}]}',
        'apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}',
        'apiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: shop}\nspec: {containers: [{name: c}]}',
      ].join('\n---\n'),
      'pods.yaml',
    );
    assert.deepEqual(where(namespaceProblems(ms.map(manifestRef), ['default'])), []);
    assert.deepEqual(where(namespaceProblems(ms.map(manifestRef), [])), [
      [
        'ERR_K8S_NAMESPACE_NOT_FOUND',
        'pods.yaml: Pod default/a: metadata.namespace: namespaces "default" not found',
      ],
    ]);
  });
});

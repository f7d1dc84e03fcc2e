import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseResource } from './get.js';

describe('weir get: resource words', () => {
  it("takes kubectl's names, short names and TYPE/NAME", () => {
    assert.deepEqual(parseResource('po'), { resource: 'pods' });
    assert.deepEqual(parseResource('Pods'), { resource: 'pods' });
    assert.deepEqual(parseResource('ns', 'shop'), { resource: 'namespaces', name: 'shop' });
    assert.deepEqual(parseResource('svc/web'), { resource: 'services', name: 'web' });
  });

  it('refuses unknown resources and a name given twice', () => {
    assert.throws(() => parseResource('deployments'), { code: 'ERR_CLI_ARGUMENT' });
    assert.throws(() => parseResource('pod/'), { code: 'ERR_CLI_ARGUMENT' });
    assert.throws(() => parseResource('pod/a/b'), { code: 'ERR_CLI_ARGUMENT' });
    assert.throws(() => parseResource('pod/a', 'b'), {
      code: 'ERR_CLI_ARGUMENT',
      message: /give the name once/,
    });
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import '../../cluster/kinds.js';
import { kindOfType, refsOfArgs } from './delete.js';

describe('weir delete: objects named by type and name', () => {
  it("takes kubectl's names, plurals and short names of every kind weir takes", () => {
    assert.equal(kindOfType('po'), 'Pod');
    assert.equal(kindOfType('Pods'), 'Pod');
    assert.equal(kindOfType('svc'), 'Service');
    assert.equal(kindOfType('networkpolicies'), 'NetworkPolicy');
    assert.equal(kindOfType('netpol'), 'NetworkPolicy');
    assert.equal(kindOfType('cnp'), 'CiliumNetworkPolicy');
    assert.equal(kindOfType('ccnp'), 'CiliumClusterwideNetworkPolicy');
    assert.equal(kindOfType('gatewayclasses'), 'GatewayClass');
    assert.equal(kindOfType('httproute'), 'HTTPRoute');
    assert.equal(kindOfType('endpointslices'), 'EndpointSlice');
    assert.equal(kindOfType('deployments'), undefined);
  });

  it('TYPE NAME… and TYPE/NAME…: namespaced kinds take -n, cluster-scoped ones do not', () => {
    assert.deepEqual(refsOfArgs(['pod', 'a', 'b'], 'app'), [
      { kind: 'Pod', name: 'a', namespace: 'app' },
      { kind: 'Pod', name: 'b', namespace: 'app' },
    ]);
    assert.deepEqual(refsOfArgs(['svc/web', 'ccnp/all', 'ns/shop'], 'default'), [
      { kind: 'Service', name: 'web', namespace: 'default' },
      { kind: 'CiliumClusterwideNetworkPolicy', name: 'all' },
      { kind: 'Namespace', name: 'shop' },
    ]);
  });

  it('refuses unknown types, missing names and mixed forms, naming the argument', () => {
    assert.throws(() => refsOfArgs(['deployments', 'x'], 'default'), {
      code: 'ERR_CLI_ARGUMENT',
      message: /unknown resource type 'deployments'/,
    });
    assert.throws(() => refsOfArgs(['pod'], 'default'), {
      code: 'ERR_CLI_ARGUMENT',
      message: /needs the names/,
    });
    assert.throws(() => refsOfArgs(['pod/'], 'default'), {
      code: 'ERR_CLI_ARGUMENT',
      message: /name is missing/,
    });
    assert.throws(() => refsOfArgs(['pod/a', 'b'], 'default'), { code: 'ERR_CLI_ARGUMENT', message: /'b'/ });
    assert.throws(() => refsOfArgs(['pod', 'a/b'], 'default'), {
      code: 'ERR_CLI_ARGUMENT',
      message: /'a\/b'/,
    });
  });
});

// Policy-map budget and bad input, through the real CLI: a policy that overflows an endpoint's
// policy map makes that endpoint fail closed (error on the endpoint, a log line, a metric, drops),
// never a silent allow; bad policies are refused with file, object and field, and nothing applies.
import assert from 'node:assert/strict';
import { readFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { agentLogFile } from '../../src/agent/paths.js';
import { cli, ok } from '../support/cli.js';
import { testLab } from '../support/lab-name.js';

const LAB = testLab('t-budget');

const pods = `
apiVersion: v1
kind: Namespace
metadata: { name: app }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: app, labels: { role: client } }
spec: { containers: [{ name: c, ports: [{ containerPort: 80 }] }] }
---
apiVersion: v1
kind: Pod
metadata: { name: server, namespace: app, labels: { role: server } }
spec: { containers: [{ name: s, ports: [{ containerPort: 80 }] }] }
`;

/** An ingress policy for the server allowing the client and `n` outside /32s: n+2 entries at least. */
function bigPolicy(n: number): string {
  const cidrs = Array.from({ length: n }, (_, i) => `        - 100.64.${i >> 8}.${i & 255}/32`).join('\n');
  return `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: big, namespace: app }
spec:
  endpointSelector: { matchLabels: { role: server } }
  ingress:
    - fromEndpoints: [{ matchLabels: { role: client } }]
    - fromCIDR:
${cidrs}
`;
}

const bad: Record<string, { yaml: string; code: string; field: RegExp }> = {
  'unknown-field.yaml': {
    yaml: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: typo, namespace: app }
spec:
  podSelector: {}
  ingres: []
`,
    code: 'ERR_POLICY_FIELD_UNKNOWN',
    field: /spec\.ingres/,
  },
  'bad-selector.yaml': {
    yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: op, namespace: app }
spec:
  endpointSelector:
    matchExpressions: [{ key: role, operator: Maybe, values: [server] }]
  ingress: [{ fromEndpoints: [{}] }]
`,
    code: 'ERR_POLICY_INVALID_SELECTOR',
    field: /endpointSelector\.matchExpressions\[0\]\.operator/,
  },
  'bad-cidr.yaml': {
    yaml: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: cidr, namespace: app }
spec:
  podSelector: {}
  egress: [{ to: [{ ipBlock: { cidr: 10.0.0.300/8 } }] }]
`,
    code: 'ERR_POLICY_INVALID_CIDR',
    field: /spec\.egress\[0\]\.to\[0\]\.ipBlock\.cidr/,
  },
  'bad-port.yaml': {
    yaml: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: port, namespace: app }
spec:
  endpointSelector: {}
  ingress: [{ toPorts: [{ ports: [{ port: "70000", protocol: TCP }] }] }]
`,
    code: 'ERR_POLICY_INVALID_PORT',
    field: /toPorts\[0\]\.ports\[0\]\.port/,
  },
};

async function reach(): Promise<boolean> {
  const r = await cli(
    ['lab', 'probe', '--from', 'app/client', '--to', 'app/server', '--port', '80/TCP', '--timeout', '800'],
    LAB,
  );
  return r.code === 0;
}

describe('policy-map budget and bad policies', () => {
  let dir: string;
  const file = (name: string) => join(dir, name);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-budget-test-'));
    await writeFile(file('pods.yaml'), pods);
    await writeFile(file('big.yaml'), bigPolicy(300));
    await writeFile(file('fits.yaml'), bigPolicy(100));
    for (const [name, b] of Object.entries(bad)) await writeFile(file(name), b.yaml);
    await cli(['lab', 'down'], LAB);
    await ok(['lab', 'up', '--policy-map-max', '256'], LAB);
    await ok(['apply', '-f', file('pods.yaml')], LAB);
  });

  after(async () => {
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  it('a policy that fits is enforced; one that overflows fails closed, visibly', async () => {
    assert.equal(await reach(), true, 'no policy: allowed');
    await ok(['apply', '-f', file('fits.yaml')], LAB);
    assert.equal(await reach(), true, 'allowed by the policy that fits');
    const fits = JSON.parse(await ok(['endpoint', 'get', 'app/server', '-o', 'json'], LAB)) as {
      state: string;
      policyEntries: number;
    };
    assert.equal(fits.state, 'ready');
    assert.ok(fits.policyEntries > 100 && fits.policyEntries <= 256, `entries ${fits.policyEntries}`);

    await ok(['apply', '-f', file('big.yaml')], LAB);
    const ep = JSON.parse(await ok(['endpoint', 'get', 'app/server', '-o', 'json'], LAB)) as {
      id: number;
      state: string;
      error?: string;
    };
    assert.equal(ep.state, 'fail-closed');
    assert.match(ep.error ?? '', /256/);
    assert.equal(await reach(), false, 'an overflowing endpoint drops new connections: never a silent allow');

    const metrics = await ok(['agent', 'metrics'], LAB);
    assert.match(metrics, new RegExp(`weir_policy_map_overflow_total\\{endpoint="${ep.id}"\\} [1-9]`));
    assert.match(metrics, /weir_endpoint_state\{endpoint_state="fail-closed"\} 1/);
    assert.match(
      metrics,
      /weir_bpf_map_ops_total\{map_name="weir_policy",operation="update",outcome="success"\} [1-9]/,
    );
    const drops = JSON.parse(await ok(['bpf', 'metrics', 'list', '-o', 'json'], LAB)) as {
      code?: number;
      reason?: number;
      packets: number | string;
    }[];
    assert.ok(
      drops.some((d) => (d.code ?? d.reason) === 240 && Number(d.packets) > 0),
      `a fail-closed drop is counted: ${JSON.stringify(drops)}`,
    );
    assert.match(await readFile(agentLogFile(LAB), 'utf8'), /policy map overflow/);

    // Back within budget: the endpoint recovers and the allowed flow works again.
    await ok(['apply', '-f', file('fits.yaml')], LAB);
    const back = JSON.parse(await ok(['endpoint', 'get', 'app/server', '-o', 'json'], LAB)) as {
      state: string;
    };
    assert.equal(back.state, 'ready');
    assert.equal(await reach(), true);
  });

  for (const [name, b] of Object.entries(bad)) {
    it(`refuses ${name} naming file, object and field, and applies nothing`, async () => {
      const before = JSON.parse(await ok(['agent', 'status', '-o', 'json'], LAB)) as { policies: number };
      // The bad object comes with a valid one: neither may apply.
      const r = await cli(['apply', '-f', file('fits.yaml'), file(name), '-o', 'json'], LAB);
      assert.notEqual(r.code, 0);
      assert.ok(r.stderr.includes(file(name)), `names the file: ${r.stderr}`);
      assert.match(r.stderr, b.field);
      assert.ok(r.stderr.includes(b.code), `code ${b.code}: ${r.stderr}`);
      const after = JSON.parse(await ok(['agent', 'status', '-o', 'json'], LAB)) as { policies: number };
      assert.equal(after.policies, before.policies, 'nothing applied');
    });
  }
});

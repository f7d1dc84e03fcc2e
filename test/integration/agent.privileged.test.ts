// The agent and the live datapath, end to end: an established TCP connection survives an unrelated
// policy change, a change that still allows it, and `kill -9` of the agent followed by a restart;
// while the agent is down, denied traffic stays denied and allowed traffic keeps flowing; a
// restarted agent rewrites nothing.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { agentPid, startAgent } from '../../src/agent/spawn.js';
import { Lab } from '../../src/lab/index.js';
import { hostRoutingAgent } from '../support/host-routing.js';
import { cli, ok } from '../support/cli.js';
import { testLab } from '../support/lab-name.js';
import { Conversation } from '../support/lines.js';

const LAB = testLab('t-agent');

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
spec: { containers: [{ name: s, ports: [{ name: http, containerPort: 80 }] }] }
---
apiVersion: v1
kind: Pod
metadata: { name: intruder, namespace: app, labels: { role: intruder } }
spec: { containers: [{ name: i, ports: [{ containerPort: 80 }] }] }
`;

const unrelated = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: intruder-isolated, namespace: app }
spec:
  podSelector: { matchLabels: { role: intruder } }
  policyTypes: [Ingress]
`;

const serverFromClient = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: server-from-client, namespace: app }
spec:
  endpointSelector: { matchLabels: { role: server } }
  ingress:
    - fromEndpoints: [{ matchLabels: { role: client } }]
      toPorts: [{ ports: [{ port: "80", protocol: TCP }] }]
`;

async function probe(from: string, to: string): Promise<boolean> {
  const r = await cli(
    ['lab', 'probe', '--from', from, '--to', to, '--port', '80/TCP', '--timeout', '800'],
    LAB,
  );
  return r.code === 0;
}

/** The pod's policy map as the kernel holds it (labels left out: they need the agent). */
async function policyEntries(pod: string): Promise<unknown[]> {
  const out = JSON.parse(await ok(['bpf', 'policy', 'get', pod, '-o', 'json'], LAB)) as {
    entries: Record<string, unknown>[];
  };
  assert.ok(out.entries.length > 0, 'the policy map has entries');
  return out.entries.map(({ labels: _labels, ...e }) => e);
}

describe('agent: live policy changes and restarts never break allowed connections', () => {
  let dir: string;
  let conv: Conversation | undefined;
  const file = (name: string) => join(dir, name);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-agent-test-'));
    await writeFile(file('pods.yaml'), pods);
    await writeFile(file('unrelated.yaml'), unrelated);
    await writeFile(file('server.yaml'), serverFromClient);
    await cli(['lab', 'down'], LAB);
    await ok(['lab', 'up'], LAB);
    await ok(['apply', '-f', file('pods.yaml')], LAB);
  });

  after(async () => {
    conv?.close();
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps an established connection through policy changes and an agent kill -9 + restart', async () => {
    const server = JSON.parse(await ok(['get', 'pod', 'server', '-n', 'app', '-o', 'json'], LAB)) as {
      status: { podIP: string };
    };
    const serverIP = server.status.podIP;
    assert.ok(serverIP, 'server has an IP');

    // No policy: everything flows.
    assert.equal(await probe('app/intruder', 'app/server'), true);
    conv = new Conversation(LAB, 'app/client', serverIP, 80, 'local-port');
    assert.match(await conv.open(), /^connected \d+$/);
    await conv.ping();

    // A policy that selects another pod changes nothing for this connection.
    await ok(['apply', '-f', file('unrelated.yaml')], LAB);
    await conv.ping();
    assert.equal(await probe('app/server', 'app/intruder'), false, 'the unrelated policy is enforced');

    // A policy on the server that still allows the client: the connection stays, others are denied.
    await ok(['apply', '-f', file('server.yaml')], LAB);
    await conv.ping();
    assert.equal(await probe('app/intruder', 'app/server'), false, 'intruder denied by the new policy');
    assert.equal(await probe('app/client', 'app/server'), true, 'new client connections allowed');

    // kill -9 the agent: the pinned datapath keeps enforcing.
    const pid = agentPid(LAB);
    assert.ok(pid, 'the agent runs');
    process.kill(pid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(agentPid(LAB), undefined, 'the agent is gone');
    await conv.ping();
    assert.equal(await probe('app/intruder', 'app/server'), false, 'denied stays denied without the agent');
    assert.equal(await probe('app/client', 'app/server'), true, 'allowed keeps flowing without the agent');
    const mapsBefore = await policyEntries('app/server');

    // Restart: it resumes from its state and the pinned maps, rewriting nothing.
    const lab = await Lab.open(LAB);
    await startAgent({ ...hostRoutingAgent(), lab: LAB, nodeNetns: (await lab.node()).netns });
    const status = JSON.parse(await ok(['agent', 'status', '-o', 'json'], LAB)) as {
      regenerations: { count: number; lastUpserts: number; lastDeletes: number };
      endpoints: number;
    };
    assert.equal(status.endpoints, 4, "the three pods and the lab's cluster DNS (kube-system/coredns)");
    assert.equal(status.regenerations.lastUpserts, 0, 'restart rewrote no entry');
    assert.equal(status.regenerations.lastDeletes, 0, 'restart removed no entry');
    assert.deepEqual(await policyEntries('app/server'), mapsBefore);
    await conv.ping();
    assert.equal(await probe('app/intruder', 'app/server'), false);
    assert.equal(await probe('app/client', 'app/server'), true);
  });
});

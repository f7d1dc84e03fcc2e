// The L7 proxy's transparent listeners and TIME_WAIT (src/proxy/time-wait.ts): a pod's connection
// redirected to the egress proxy (an HTTP rule) is accepted in the node's namespace under the
// pod's own tuple; the proxy answers `Connection: close` by closing first, which left a TIME_WAIT
// socket of the tuple in the node's namespace, and the pod's next connection from the same port
// had every SYN dropped (bpf_sk_assign bypasses the stack's TIME_WAIT handling) for 60 s. The
// proxy now removes that copy: six connections from one port in a row each connect at once.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cli, ok } from '../support/cli.js';
import { testLab } from '../support/lab-name.js';
import { lastOf } from '../support/poll.js';
import { assertPortReuse, portReuseScript, timeWaitSockets } from '../support/port-reuse.js';

const LAB = testLab('t-l7tw');

const manifests = `apiVersion: v1
kind: Pod
metadata: { name: client, labels: { app: client } }
spec: { containers: [{ name: c }] }
---
apiVersion: v1
kind: Pod
metadata: { name: server, labels: { app: server } }
spec: { containers: [{ name: c, ports: [{ containerPort: 8080 }] }] }
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: client-l7 }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
    - toEndpoints: [{ matchLabels: { app: server } }]
      toPorts: [{ ports: [{ port: "8080", protocol: TCP }], rules: { http: [{ method: GET }] } }]
`;

describe(
  'the L7 proxy leaves no TIME_WAIT of a pod tuple in the node namespace',
  { timeout: 300_000 },
  () => {
    let dir = '';
    let server = '';

    /** The status code of a `method` request from the client to the server (5 s). */
    const code = async (method: string) =>
      (
        await cli(
          [
            'lab',
            'exec',
            'default/client',
            '--',
            'curl',
            '-s',
            '-m',
            '5',
            '-X',
            method,
            '-o',
            '/dev/null',
            '-w',
            '%{http_code}',
            `http://${server}:8080/`,
          ],
          LAB,
        )
      ).stdout.trim();

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'weir-l7tw-'));
      await writeFile(join(dir, 'all.yaml'), manifests);
      await writeFile(join(dir, 'reuse.mjs'), portReuseScript);
      await cli(['lab', 'down'], LAB);
      await ok(['lab', 'up', '--lab', LAB], LAB, 300_000);
      await ok(['apply', '-f', join(dir, 'all.yaml')], LAB);
      const pods = JSON.parse(await ok(['get', 'pods', '-o', 'json'], LAB)) as {
        items: { metadata: { name: string }; status: { podIP: string } }[];
      };
      server = pods.items.find((p) => p.metadata.name === 'server')?.status.podIP ?? '';
      assert.ok(server, 'the server pod has an address');
    });

    after(async () => {
      await cli(['lab', 'down'], LAB);
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('connections from one pod port in a row through the egress proxy each connect at once', async () => {
      // The rule is in force (the proxy started, GET allowed, POST refused by the proxy).
      const get = await lastOf(
        () => code('GET'),
        (c) => c === '200',
        60_000,
      );
      assert.equal(get, '200', 'GET through the egress proxy');
      assert.equal(await code('POST'), '403', 'the proxy is in the path (POST refused)');
      await assertPortReuse(LAB, join(dir, 'reuse.mjs'), server);
      const tw = await timeWaitSockets(LAB, 'node1');
      assert.doesNotMatch(
        tw,
        new RegExp(`${server}:8080\\s+\\S+:23456\\b`),
        'no TIME_WAIT of the tuple left',
      );
    });
  },
);

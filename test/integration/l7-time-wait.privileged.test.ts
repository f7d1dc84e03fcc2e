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
import { run } from '../../src/shared/exec.js';
import { cli, ok } from '../support/cli.js';
import { testLab } from '../support/lab-name.js';
import { portReuseScript } from '../support/port-reuse.js';

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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe(
  'the L7 proxy leaves no TIME_WAIT of a pod tuple in the node namespace',
  { timeout: 300_000 },
  () => {
    let dir = '';
    let server = '';

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
      const deadline = Date.now() + 60_000;
      let code = '';
      while (Date.now() < deadline && code !== '200') {
        code = (
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
              '-o',
              '/dev/null',
              '-w',
              '%{http_code}',
              `http://${server}:8080/`,
            ],
            LAB,
          )
        ).stdout.trim();
        if (code !== '200') await sleep(500);
      }
      assert.equal(code, '200', 'GET through the egress proxy');
      const post = await cli(
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
          'POST',
          '-o',
          '/dev/null',
          '-w',
          '%{http_code}',
          `http://${server}:8080/`,
        ],
        LAB,
      );
      assert.equal(post.stdout.trim(), '403', 'the proxy is in the path (POST refused)');
      const out = await ok(
        [
          'lab',
          'exec',
          'default/client',
          '--',
          process.execPath,
          join(dir, 'reuse.mjs'),
          server,
          '8080',
          '6',
          '23456',
        ],
        LAB,
        120_000,
      );
      const r = JSON.parse(out.trim().split('\n').pop() ?? '{}') as {
        times?: number[];
        synRetrans?: number;
        error?: string;
      };
      assert.equal(r.error, undefined, `every connection from the same port answered: ${out}`);
      assert.equal(r.times?.length, 6, out);
      assert.equal(r.synRetrans, 0, `no SYN of the pod had to be retransmitted: ${out}`);
      const tw = await run(['ip', 'netns', 'exec', `weir-${LAB}-node1`, 'ss', '-tanH', 'state', 'time-wait']);
      assert.doesNotMatch(
        tw.stdout,
        new RegExp(`${server}:8080\\s+\\S+:23456\\b`),
        'no TIME_WAIT of the tuple left',
      );
    });
  },
);

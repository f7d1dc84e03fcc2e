// weir-cni against the CNI spec (SPEC.md, spec-v1.1.0): the real bin/weir-cni process is run as a
// runtime runs it — CNI_* environment, network configuration on stdin — for every command and for
// configurations of 0.4.0, 1.0.0 and 1.1.0, and its stdout and exit code are checked against the
// spec's shapes (result, error {cniVersion, code, msg, details}, VERSION's supportedVersions).
// The node agent it talks to is the agent's real API server on a unix socket, answering weir-cni's
// routes the way the agent does (its errors are the agent's error codes); the podman test
// (test/integration/cni.privileged.test.ts) runs the plugin against the real agent.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { statSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { listenApi } from '../agent/api-server.js';
import { repoRoot } from '../shared/paths.js';
import { WeirError } from '../shared/errors.js';

const plugin = join(repoRoot, 'bin', 'weir-cni');
const versions = ['0.4.0', '1.0.0', '1.1.0'] as const;

interface Outcome {
  code: number;
  stdout: string;
  json: Record<string, unknown> | undefined;
}

function runPlugin(env: Record<string, string>, stdin: string): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [plugin], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    p.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    p.on('error', reject);
    p.on('close', (code) => {
      let json: Record<string, unknown> | undefined;
      try {
        json = stdout.trim() ? (JSON.parse(stdout) as Record<string, unknown>) : undefined;
      } catch {
        json = undefined;
      }
      resolve({ code: code ?? 1, stdout, json });
    });
    p.stdin.end(stdin);
  });
}

/** An error as the spec writes it: exit non-zero, {cniVersion, code, msg, details?} on stdout. */
function assertError(o: Outcome, code: number, version: string, details?: RegExp): void {
  assert.notEqual(o.code, 0, o.stdout);
  assert.ok(o.json, `stdout is a JSON error: ${o.stdout}`);
  assert.equal(o.json.cniVersion, version);
  assert.equal(o.json.code, code, o.stdout);
  assert.equal(typeof o.json.msg, 'string');
  assert.ok((o.json.msg as string).length > 0);
  for (const k of Object.keys(o.json)) assert.ok(['cniVersion', 'code', 'msg', 'details'].includes(k), k);
  if (details) assert.match(String(o.json.details), details);
}

describe('weir-cni and the CNI spec', () => {
  let dir = '';
  let socket = '';
  let netns = '';
  let server: Server;
  /** What the agent received, by route. */
  const got: { path: string; body: Record<string, unknown> }[] = [];
  /** How the agent answers next (per route), as the real agent would. */
  let answer: Record<string, (body: Record<string, unknown>) => unknown> = {};

  const conf = (version: string, extra: Record<string, unknown> = {}) =>
    JSON.stringify({ cniVersion: version, name: 'weir', type: 'weir-cni', agentSocket: socket, ...extra });
  const env = (command: string, extra: Record<string, string> = {}) => ({
    CNI_COMMAND: command,
    CNI_CONTAINERID: 'a1b2c3d4e5f6',
    CNI_NETNS: netns,
    CNI_IFNAME: 'eth0',
    CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1',
    CNI_PATH: '/opt/cni/bin',
    ...extra,
  });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-cni-spec-'));
    socket = join(dir, 'agent', 'agent.sock');
    netns = join(dir, 'netns-test');
    await writeFile(netns, '');
    const route = (method: 'GET' | 'POST', path: string) => ({
      method,
      pattern: path,
      handler: (req: { body: unknown }) => {
        const body = (req.body ?? {}) as Record<string, unknown>;
        got.push({ path, body });
        const fn = answer[path];
        if (!fn) throw new WeirError('ERR_API_NOT_FOUND', `no answer for ${path}`);
        return fn(body);
      },
    });
    server = await listenApi(socket, [
      route('GET', '/v1/cni/status'),
      route('POST', '/v1/cni/add'),
      route('POST', '/v1/cni/del'),
      route('POST', '/v1/cni/check'),
      route('POST', '/v1/cni/gc'),
    ]);
  });

  after(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    got.length = 0;
    answer = {
      '/v1/cni/status': () => ({ ready: true }),
      '/v1/cni/add': (b) => {
        // The agent opens the plugin's descriptor of CNI_NETNS while the ADD waits.
        assert.equal(statSync(String(b.netnsPath)).ino, statSync(netns).ino);
        return {
          namespace: b.namespace,
          name: b.name,
          ifname: b.ifname,
          mac: '0a:58:0a:f4:00:05',
          ip: '10.244.0.5',
          ip6: 'fd00:10:244::5',
          gateway: '10.244.0.1',
          hostIfname: 'weir0123abcd',
        };
      },
      '/v1/cni/del': () => ({ removed: true }),
      '/v1/cni/check': () => ({ ok: true }),
      '/v1/cni/gc': () => ({ removed: [] }),
    };
  });

  for (const v of versions) {
    it(`VERSION answers the request's version ${v} and the supported ones`, async () => {
      const o = await runPlugin({ CNI_COMMAND: 'VERSION' }, JSON.stringify({ cniVersion: v }));
      assert.equal(o.code, 0);
      assert.deepEqual(o.json, { cniVersion: v, supportedVersions: ['0.4.0', '1.0.0', '1.1.0'] });
    });

    it(`ADD (${v}) prints the result of the agent's endpoint`, async () => {
      const o = await runPlugin(env('ADD'), conf(v));
      assert.equal(o.code, 0, o.stdout);
      const v04 = v === '0.4.0';
      assert.deepEqual(o.json, {
        cniVersion: v,
        interfaces: [{ name: 'eth0', mac: '0a:58:0a:f4:00:05', sandbox: netns }],
        ips: [
          { ...(v04 ? { version: '4' } : {}), address: '10.244.0.5/32', gateway: '10.244.0.1', interface: 0 },
          {
            ...(v04 ? { version: '6' } : {}),
            address: 'fd00:10:244::5/128',
            gateway: 'fe80::1',
            interface: 0,
          },
        ],
        routes: [
          { dst: '0.0.0.0/0', gw: '10.244.0.1' },
          { dst: '::/0', gw: 'fe80::1' },
        ],
        dns: {},
      });
      const req = got.find((g) => g.path === '/v1/cni/add')?.body;
      assert.equal(req?.namespace, 'default');
      assert.equal(req?.name, 'web-1');
      assert.equal(req?.containerId, 'a1b2c3d4e5f6');
      assert.equal(req?.ifname, 'eth0');
      assert.equal(req?.netns, netns);
    });

    it(`DEL (${v}) prints nothing and exits 0, also for a container already gone`, async () => {
      const prevResult = { cniVersion: v, ips: [{ address: '10.244.0.5/32' }] };
      const o = await runPlugin(env('DEL', { CNI_NETNS: '' }), conf(v, { prevResult }));
      assert.equal(o.code, 0, o.stdout);
      assert.equal(o.stdout, '');
      answer['/v1/cni/del'] = () => ({ removed: false });
      const again = await runPlugin(env('DEL'), conf(v));
      assert.equal(again.code, 0, again.stdout);
      assert.equal(again.stdout, '');
      assert.deepEqual(
        got.map((g) => [g.path, g.body.containerId, g.body.name]),
        [
          ['/v1/cni/del', 'a1b2c3d4e5f6', 'web-1'],
          ['/v1/cni/del', 'a1b2c3d4e5f6', 'web-1'],
        ],
      );
    });

    it(`CHECK (${v}) passes prevResult's addresses to the agent; a mismatch is error 101`, async () => {
      const prevResult = {
        cniVersion: v,
        ips: [{ address: '10.244.0.5/32' }, { address: 'fd00:10:244::5/128' }],
      };
      const o = await runPlugin(env('CHECK'), conf(v, { prevResult }));
      assert.equal(o.code, 0, o.stdout);
      assert.equal(o.stdout, '');
      assert.deepEqual(got[0]?.body.ips, ['10.244.0.5', 'fd00:10:244::5']);
      answer['/v1/cni/check'] = () => {
        throw new WeirError(
          'ERR_CNI_NOT_FOUND',
          'pod default/web-1 has 10.244.0.6, not 10.244.0.5 (prevResult)',
        );
      };
      assertError(
        await runPlugin(env('CHECK'), conf(v, { prevResult })),
        101,
        v,
        /ERR_CNI_NOT_FOUND: .*10\.244\.0\.5/,
      );
      assertError(await runPlugin(env('CHECK'), conf(v)), 7, v, /prevResult/);
    });

    it(`configuration ${v}: errors carry its version`, async () => {
      assertError(await runPlugin(env('ADD', { CNI_CONTAINERID: '' }), conf(v)), 4, v);
      assertError(
        await runPlugin(env('ADD', { CNI_ARGS: 'K8S_POD_NAME=web-1;COLOR=blue' }), conf(v)),
        4,
        v,
        /COLOR/,
      );
      assertError(await runPlugin(env('ADD', { CNI_ARGS: 'IgnoreUnknown=1' }), conf(v)), 4, v);
      assertError(await runPlugin(env('ADD'), conf(v, { name: '' })), 7, v, /name/);
    });
  }

  it("the spec's error example shapes: undecodable stdin, unknown versions, an unknown command", async () => {
    assertError(await runPlugin(env('ADD'), '{"cniVersion": '), 6, '1.1.0');
    assertError(await runPlugin(env('ADD'), conf('0.3.1')), 1, '0.3.1', /0\.4\.0, 1\.0\.0, 1\.1\.0/);
    assertError(await runPlugin(env('ADD'), conf('2.0.0')), 1, '2.0.0');
    assertError(await runPlugin(env('FROB'), conf('1.1.0')), 4, '1.1.0', /FROB/);
    assertError(
      await runPlugin(env('ADD', { CNI_IFNAME: 'a-very-long-ifname0' }), conf('1.1.0')),
      4,
      '1.1.0',
    );
  });

  it('ADD: the agent down is error 11 (try again later), a failed attachment is 100', async () => {
    const down = conf('1.1.0', { agentSocket: join(dir, 'nobody', 'agent.sock') });
    assertError(await runPlugin(env('ADD'), down), 11, '1.1.0', /ERR_AGENT_UNREACHABLE/);
    answer['/v1/cni/add'] = () => {
      throw new WeirError(
        'ERR_CNI_ATTACHMENT_FAILED',
        'node node1 could not attach: the pod CIDR has no free address',
      );
    };
    assertError(await runPlugin(env('ADD'), conf('1.0.0')), 100, '1.0.0', /no free address/);
    assertError(await runPlugin(env('ADD', { CNI_NETNS: join(dir, 'missing') }), conf('1.1.0')), 4, '1.1.0');
  });

  it('STATUS (1.1.0): exit 0 when ready, 50 when not ready or unreachable; older configs are refused', async () => {
    const o = await runPlugin({ CNI_COMMAND: 'STATUS' }, conf('1.1.0'));
    assert.equal(o.code, 0, o.stdout);
    assert.equal(o.stdout, '');
    answer['/v1/cni/status'] = () => ({ ready: false, message: 'the agent has not reconciled yet' });
    assertError(await runPlugin({ CNI_COMMAND: 'STATUS' }, conf('1.1.0')), 50, '1.1.0', /not reconciled/);
    const down = conf('1.1.0', { agentSocket: join(dir, 'nobody', 'agent.sock') });
    assertError(await runPlugin({ CNI_COMMAND: 'STATUS' }, down), 50, '1.1.0');
    assertError(await runPlugin({ CNI_COMMAND: 'STATUS' }, conf('1.0.0')), 1, '1.0.0');
  });

  it('GC (1.1.0) hands the valid attachments to the agent, in either spelling', async () => {
    for (const key of ['cni.dev/valid-attachments', 'cni.dev/attachments']) {
      got.length = 0;
      const o = await runPlugin(
        { CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' },
        conf('1.1.0', {
          [key]: [
            { containerID: 'aaa', ifname: 'eth0' },
            { containerID: 'bbb', ifname: 'eth0' },
          ],
        }),
      );
      assert.equal(o.code, 0, o.stdout);
      assert.equal(o.stdout, '');
      assert.deepEqual(got[0]?.body.valid, ['aaa', 'bbb']);
    }
    assertError(
      await runPlugin({ CNI_COMMAND: 'GC' }, conf('1.1.0', { 'cni.dev/valid-attachments': 'x' })),
      7,
      '1.1.0',
    );
    assertError(await runPlugin({ CNI_COMMAND: 'GC' }, conf('0.4.0')), 1, '0.4.0');
  });
});

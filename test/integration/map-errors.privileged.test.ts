// A map read that feeds a verdict never fails silently. A real lab and agent; the kernel's answers
// are changed where they come from:
//   - an endpoint whose policy map weir_policy does not point to (ENOENT of that lookup) is no
//     error: `policy trace --datapath` shows what the datapath does (Endpoint not ready, 203);
//   - a bpf() syscall that fails (EIO injected into the agent's or the CLI's syscalls with
//     strace, the kernel interface unchanged) makes `policy trace --datapath` and
//     `weir bpf policy get` exit non-zero, naming the map and the errno, instead of a verdict
//     read from nothing;
//   - a policy map pin replaced by a map of another kind is refused by `weir bpf` and by a
//     restarted agent (`weir lab up` fails, naming the pin), never read as the policy.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { nodePinDir } from '../../src/agent/paths.js';
import { agentPid } from '../../src/agent/spawn.js';
import { BpfMap, TypedMap, u32 } from '../../src/bpf/index.js';
import { Lab } from '../../src/lab/index.js';
import { run } from '../../src/shared/exec.js';
import { cli, ok, weir, type CliResult } from '../support/cli.js';
import { testLab } from '../support/lab-name.js';
import { lineReader } from '../support/lines.js';

const LAB = testLab('t-maperr');

const objects = `
apiVersion: v1
kind: Namespace
metadata: { name: me }
---
apiVersion: v1
kind: Pod
metadata: { name: server, namespace: me, labels: { role: server } }
spec: { containers: [{ name: s, ports: [{ containerPort: 80 }] }] }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: me, labels: { role: client } }
spec: { containers: [{ name: c, ports: [{ containerPort: 80 }] }] }
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: server-from-client, namespace: me }
spec:
  endpointSelector: { matchLabels: { role: server } }
  ingress:
    - fromEndpoints: [{ matchLabels: { role: client } }]
      toPorts: [{ ports: [{ port: "80", protocol: TCP }] }]
`;

const trace = () =>
  cli(['policy', 'trace', '--from', 'me/client', '--to', 'me/server', '--port', '80/TCP', '--datapath'], LAB);

/** Runs `weir args` under strace, every bpf() call from the `nth` on failing with EIO. */
async function cliWithEio(args: string[], nth: number): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(
      'strace',
      [
        '-f',
        '-qq',
        '-o',
        '/dev/null',
        '-e',
        'trace=bpf',
        '-e',
        `inject=bpf:error=EIO:when=${nth}+`,
        weir,
        ...args,
      ],
      { env: { ...process.env, WEIR_LAB: LAB } },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

/** The position (1-based) of the first bpf() map read of `weir args`, from a traced dry run. */
async function firstMapRead(args: string[], dir: string): Promise<number> {
  const out = join(dir, 'strace.txt');
  await run(['strace', '-f', '-qq', '-o', out, '-e', 'trace=bpf', weir, ...args], {
    timeoutMs: 60_000,
    env: { ...process.env, WEIR_LAB: LAB },
  });
  const calls = (await readFile(out, 'utf8'))
    .split('\n')
    .map((l) => /^(\d+)\s+bpf\((BPF_\w+)/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null);
  const pid = calls[0]?.[1];
  const mine = calls.filter((m) => m[1] === pid).map((m) => m[2]);
  const i = mine.findIndex((c) => /^BPF_MAP_(LOOKUP_BATCH|LOOKUP_ELEM|GET_NEXT_KEY)$/.test(c ?? ''));
  assert.ok(i >= 0, `weir ${args.join(' ')} reads a map: ${mine.join(' ')}`);
  return i + 1;
}

/** Attaches strace to the agent so that each of its bpf() calls fails with EIO; detach() undoes it. */
async function agentEio(): Promise<{ detach: () => Promise<void> }> {
  const pid = agentPid(LAB);
  assert.ok(pid, 'the agent runs');
  const child = spawn('strace', [
    '-p',
    String(pid),
    '-o',
    '/dev/null',
    '-e',
    'trace=bpf',
    '-e',
    'inject=bpf:error=EIO',
  ]);
  const first = await lineReader(child.stderr)(10_000, 'strace did not attach in 10 s');
  assert.match(first, /attached/);
  return {
    detach: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGINT');
      }),
  };
}

describe('map read errors surface, naming the map and the errno', () => {
  let dir: string;
  let pinDir: string;
  let serverId: number;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-maperr-'));
    await writeFile(join(dir, 'objects.yaml'), objects);
    await cli(['lab', 'down'], LAB);
    await ok(['lab', 'up'], LAB);
    await ok(['apply', '-f', join(dir, 'objects.yaml')], LAB);
    pinDir = nodePinDir(LAB, (await (await Lab.open(LAB)).node()).name);
    const eps = JSON.parse(await ok(['endpoint', 'list', '-o', 'json'], LAB)) as {
      id: number;
      pod: string;
    }[];
    const server = eps.find((e) => e.pod === 'server');
    assert.ok(server, 'the server is an endpoint');
    serverId = server.id;
    const r = await trace();
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /engine and datapath agree/);
  });

  after(async () => {
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  it('an endpoint without a policy map in weir_policy is shown as the datapath treats it, not as an error', async () => {
    const outer = new TypedMap(BpfMap.fromPin(join(pinDir, 'weir_policy')), u32(), u32());
    const inner = BpfMap.fromPin(join(pinDir, `policy_${serverId}`));
    try {
      assert.ok(outer.delete(serverId));
      const r = await trace();
      assert.equal(r.code, 2, `engine and datapath disagree: ${r.stderr}`);
      assert.doesNotMatch(r.stderr, /Error/);
      const live = r.stdout.slice(r.stdout.indexOf('datapath (live maps)'));
      assert.match(live, /ingress me\/server: default-deny.*\(drop 203\).*no policy map for endpoint/);
    } finally {
      outer.update(serverId, inner.fd);
      inner.close();
      outer.map.close();
    }
    assert.equal((await trace()).code, 0);
  });

  it('policy trace --datapath fails with the map and errno when the agent cannot read it', async () => {
    const eio = await agentEio();
    let r: CliResult;
    try {
      r = await trace();
    } finally {
      await eio.detach();
    }
    assert.notEqual(r.code, 0, `a verdict was printed: ${r.stdout}`);
    assert.match(r.stderr, /map 'weir_policy' lookup: .*\(EIO\)/);
    const again = await trace();
    assert.equal(again.code, 0, `the agent reads again once the kernel answers: ${again.stderr}`);
  });

  it('weir bpf policy get fails with the map and errno when the read fails', async () => {
    const args = ['bpf', 'policy', 'get', String(serverId)];
    assert.match(await ok(args, LAB), /Allow\s+Ingress/);
    const r = await cliWithEio(args, await firstMapRead(args, dir));
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, new RegExp(`map 'weir_pol_${serverId}' lookup_batch: .*\\(EIO\\)`));
    assert.equal(r.stdout, '', 'nothing was listed');
  });

  it('a policy map pin replaced by a map of another kind is refused by weir bpf and by a restarted agent', async () => {
    const pin = join(pinDir, `policy_${serverId}`);
    const original = BpfMap.fromPin(pin);
    const fake = BpfMap.create({
      type: 'hash',
      name: 'weir_fake',
      keySize: 12,
      valueSize: 8,
      maxEntries: 16,
    });
    unlinkSync(pin);
    fake.pin(pin);
    try {
      const get = await cli(['bpf', 'policy', 'get', String(serverId)], LAB);
      assert.equal(get.code, 1);
      assert.match(
        get.stderr,
        new RegExp(`map policy_${serverId} .* is a hash map; .*lpm_trie.*ERR_DATAPATH_MAP_KIND`),
      );
      const pid = agentPid(LAB);
      assert.ok(pid);
      process.kill(pid, 'SIGKILL');
      const up = await cli(['lab', 'up'], LAB);
      assert.notEqual(up.code, 0, 'the agent does not start on a foreign policy map');
      assert.match(up.stderr, new RegExp(`exited during start: .*policy_${serverId} .* is a hash map`));
    } finally {
      fake.unpin(pin);
      fake.close();
      original.pin(pin);
      original.close();
    }
    await ok(['lab', 'up'], LAB);
    const status = JSON.parse(await ok(['agent', 'status', '-o', 'json'], LAB)) as {
      regenerations: { lastUpserts: number; lastDeletes: number };
    };
    assert.deepEqual([status.regenerations.lastUpserts, status.regenerations.lastDeletes], [0, 0]);
    assert.equal((await trace()).code, 0);
  });
});

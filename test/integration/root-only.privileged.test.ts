// weir's run-time state is root's alone, and a user who is not root is told so: the lab's state
// (pods, addresses, labels), logs and sockets are in 0700 directories and 0600 files; every command
// that needs root answers a non-root user with one clear line and a non-zero exit (not an empty
// listing), while --help, --version and the offline commands work for anyone. A lab that does not
// exist is an error naming it, not "No resources found".
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runDir } from '../../src/shared/paths.js';
import { cli, ok, weir, type CliResult } from '../support/cli.js';
import { testLab } from '../support/lab-name.js';

const LAB = testLab('t-root');
const NOLAB = testLab('t-nosuchlab');

/** Runs `argv` as user nobody (no groups), the way a non-root user would. */
function asNobody(argv: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      'setpriv',
      ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '--', ...argv],
      { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', WEIR_LAB: LAB, ...env }, timeout: 60_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}
const weirAsNobody = (args: string[]) => asNobody([process.execPath, weir, ...args]);

interface Entry {
  path: string;
  kind: 'dir' | 'file' | 'socket' | 'other';
  mode: number;
}

/** Every directory and file below `dir` (itself included), with its permission bits. */
function walk(dir: string): Entry[] {
  const out: Entry[] = [{ path: dir, kind: 'dir', mode: lstatSync(dir).mode & 0o777 }];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else
      out.push({
        path: p,
        kind: e.isFile() ? 'file' : e.isSocket() ? 'socket' : 'other',
        mode: lstatSync(p).mode & 0o777,
      });
  }
  return out;
}

before(async () => {
  await cli(['lab', 'down'], LAB);
  await ok(['lab', 'up'], LAB);
  await ok(['apply', '-f', join('examples', 'demo', '01-namespaces-pods.yaml')], LAB);
});

after(async () => {
  await cli(['lab', 'down'], LAB);
});

describe('root-only run-time state', () => {
  it('keeps the run dir, the lab state, logs, sockets and agent files root-only (0700 / 0600)', () => {
    const labDir = join(runDir, 'labs', LAB);
    assert.equal(lstatSync(runDir).mode & 0o777, 0o700, runDir);
    assert.equal(lstatSync(join(runDir, 'labs')).mode & 0o777, 0o700);
    const entries = walk(labDir);
    const names = entries.map((e) => e.path.slice(labDir.length + 1));
    for (const want of [
      'lab.json',
      'logs',
      'logs/agent.log',
      'sockets',
      'agent',
      'agent/agent.sock',
      'agent/store.json',
      'agent/store.json.log',
      'agent/store.json.lock',
    ])
      assert.ok(names.includes(want), `${want} is among ${names.join(', ')}`);
    assert.ok(
      names.some((n) => /^logs\/pod-shop-backend\.log$/.test(n)),
      'a pod workload log',
    );
    assert.ok(
      names.some((n) => /^sockets\/.+\.sock$/.test(n)),
      'a workload socket',
    );
    const open = entries
      .filter((e) => (e.kind === 'dir' ? e.mode !== 0o700 : e.kind === 'file' ? e.mode !== 0o600 : false))
      .map((e) => `${e.path} ${e.mode.toString(8)}`);
    assert.deepEqual(open, []);
  });

  it('a non-root user cannot read the state or list the labs', async () => {
    const state = await asNobody(['cat', join(runDir, 'labs', LAB, 'agent', 'store.json')]);
    assert.notEqual(state.code, 0);
    assert.match(state.stderr, /Permission denied/);
    const ls = await asNobody(['ls', join(runDir, 'labs')]);
    assert.notEqual(ls.code, 0);
    assert.match(ls.stderr, /Permission denied/);
  });

  it('every command that needs root tells a non-root user so, in one line, exiting 1', async () => {
    for (const [words, args] of [
      ['get', ['get', 'pods']],
      ['get', ['get', 'pods', '-A', '-o', 'json']],
      ['lab status', ['lab', 'status']],
      ['observe', ['observe', '--last', '1']],
      ['bpf ct list', ['bpf', 'ct', 'list']],
      ['endpoint list', ['endpoint', 'list']],
      ['apply', ['apply', '-f', join('examples', 'demo', '02-policies.yaml')]],
      ['lab down', ['lab', 'down']],
    ] as const) {
      const r = await weirAsNobody([...args]);
      assert.equal(r.code, 1, `weir ${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stdout, '', `weir ${args.join(' ')} printed nothing`);
      assert.match(
        r.stderr,
        new RegExp(
          `^Error: weir needs root: 'weir ${words}' .* \\(run it as root, e\\.g\\. with sudo\\) \\[ERR_CLI_NEEDS_ROOT\\]\\n$`,
        ),
        `weir ${args.join(' ')}`,
      );
    }
    // Nothing changed: the lab still runs its four pods.
    assert.match(await ok(['get', 'pods', '-A'], LAB), /\ntools\s+debug\s+1\/1\s+Running/);
  });

  it('--help, --version and the offline commands work for any user', async () => {
    const help = await weirAsNobody(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: weir /);
    const version = await weirAsNobody(['--version']);
    assert.deepEqual([version.code, version.stdout], [0, '0.1.0\n']);
    const getHelp = await weirAsNobody(['get', '--help']);
    assert.equal(getHelp.code, 0);
    assert.match(getHelp.stdout, /Usage: weir get \[options\] <resource> \[name\]/);
    const trace = await weirAsNobody([
      'policy',
      'trace',
      '--from',
      'tools/debug',
      '--to',
      'shop/backend',
      '--port',
      '8080/TCP',
      '-f',
      join('examples', 'demo', '01-namespaces-pods.yaml'),
      join('examples', 'demo', '02-policies.yaml'),
    ]);
    assert.equal(trace.code, 0, trace.stderr);
    assert.match(trace.stdout, /tools\/debug .* -> shop\/backend .* TCP\/8080: DENIED/);
  });
});

describe('a lab that does not exist', () => {
  it('is an error naming the lab and how to create it, from every command on a lab', async () => {
    for (const args of [
      ['get', 'pods'],
      ['get', 'svc', '-A'],
      ['lab', 'status'],
      ['observe', '--last', '1'],
      ['bpf', 'ct', 'list'],
      ['endpoint', 'list'],
      ['agent', 'status'],
      ['apply', '-f', join('examples', 'demo', '01-namespaces-pods.yaml')],
    ]) {
      const r = await cli([...args, '--lab', NOLAB], LAB);
      assert.equal(r.code, 1, `weir ${args.join(' ')}`);
      assert.equal(r.stdout, '');
      assert.equal(
        r.stderr,
        `Error: lab "${NOLAB}" does not exist (create it with 'weir lab up --lab ${NOLAB}') [ERR_LAB_NOT_UP]\n`,
        `weir ${args.join(' ')}`,
      );
    }
  });
});

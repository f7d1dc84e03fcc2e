import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Command } from 'commander';
import { registerCommands } from './commands/index.js';
import { commandPath, needs, preflight } from './preflight.js';

function program(): Command {
  const p = new Command('weir');
  registerCommands(p);
  return p;
}

/** Every command that runs something (has no sub-commands), with its default options. */
function leaves(cmd: Command): Command[] {
  return cmd.commands.length === 0 ? [cmd] : cmd.commands.flatMap(leaves);
}

describe('preflight', () => {
  it('names commands by their words', () => {
    const p = program();
    const ct = p.commands.find((c) => c.name() === 'bpf')?.commands.find((c) => c.name() === 'ct');
    assert.equal(commandPath(ct?.commands[0] as Command), 'bpf ct list');
    assert.equal(commandPath(p.commands.find((c) => c.name() === 'get') as Command), 'get');
  });

  it('every command needs root, and the lab of --lab, except the offline ones and lab up/down', () => {
    const all = leaves(program()).map((c) => ({
      path: commandPath(c),
      opts: c.opts(),
      lab: c.options.some((o) => o.long === '--lab'),
    }));
    assert.ok(all.length > 25, `${all.length} commands`);
    for (const c of all) {
      const n = needs(c.path, c.opts);
      assert.equal(n.root, true, `${c.path} needs root`);
      const exempt = c.path === 'lab up' || c.path === 'lab down';
      assert.equal(n.lab, c.lab && !exempt, `${c.path} ${n.lab ? 'checks' : 'does not check'} its lab`);
    }
  });

  it('offline work needs neither: policy trace -f, conformance run --mode simulate', () => {
    assert.deepEqual(needs('policy trace', { filename: ['a.yaml'], lab: 'lab' }), {
      root: false,
      lab: false,
    });
    assert.deepEqual(needs('policy trace', { lab: 'lab' }), { root: true, lab: true });
    assert.deepEqual(needs('conformance run', { mode: 'simulate' }), { root: false, lab: false });
    assert.deepEqual(needs('conformance run', { mode: 'datapath' }), { root: true, lab: false });
  });

  it('refuses a non-root user in one line, before touching the lab', async () => {
    const get = program().commands.find((c) => c.name() === 'get') as Command;
    await assert.rejects(preflight(get, 65534), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_CLI_NEEDS_ROOT');
      assert.match(err.message, /^weir needs root: 'weir get' .*\(run it as root, e\.g\. with sudo\)$/);
      assert.ok(!err.message.includes('\n'));
      return true;
    });
  });
});

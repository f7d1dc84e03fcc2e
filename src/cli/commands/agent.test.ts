// `weir agent run` and `weir lab up` take every agent setting (settings.ts), by the same flag.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import type { Command } from 'commander';
import { SETTINGS, type Setting } from '../../agent/settings.js';
import { agentCommand, givenSettings } from './agent.js';
import { labCommand } from './lab.js';

const sub = (cmd: Command, name: string) => {
  const c = cmd.commands.find((x) => x.name() === name);
  assert.ok(c, name);
  return c;
};
const flags = (cmd: Command) => new Set(cmd.options.map((o) => o.long));

it('weir agent run and weir lab up have a flag for every setting, parsed by the table', () => {
  const run = sub(agentCommand(), 'run');
  const up = sub(labCommand(), 'up');
  for (const s of SETTINGS as readonly Setting[]) {
    assert.ok(flags(run).has(s.flag), `weir agent run ${s.flag}`);
    assert.ok(flags(up).has(s.flag), `weir lab up ${s.flag}`);
  }
  run.exitOverride();
  run.action(() => undefined);
  run.parse(['--socket-lb', 'off', '--lb-maglev-table-size', '251', '--service-cidr-v6', 'none'], {
    from: 'user',
  });
  assert.deepEqual(givenSettings(run.opts()), { socketLB: false, maglevTableSize: 251, serviceCIDRv6: '' });
});

// `weir agent run` and `weir lab up` take every agent setting (settings.ts), by the same flag.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { labDir } from '../../lab/names.js';
import { SETTINGS, checkEncryptionRouting, type Setting } from '../../agent/settings.js';
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

it('weir lab up refuses --encryption mtls with --routing native before making anything', async () => {
  const up = sub(labCommand(), 'up');
  up.exitOverride();
  const lab = `weir-enc-native-refused-${process.pid}`;
  await assert.rejects(
    up.parseAsync(['--lab', lab, '--nodes', '2', '--routing', 'native', '--encryption', 'mtls'], {
      from: 'user',
    }),
    (err: Error & { code?: string; location?: { field?: string } }) => {
      assert.equal(err.code, 'ERR_AGENT_CONFIG');
      assert.match(err.message, /--encryption mtls/);
      assert.match(err.message, /--routing native/);
      assert.equal(err.location?.field, '--encryption');
      return true;
    },
  );
  assert.equal(existsSync(labDir(lab)), false, 'no lab made');
  // The agent refuses the same (checked at its start, on the lab's routing).
  assert.throws(() => checkEncryptionRouting('mtls', 'native'), /--routing native/);
  assert.doesNotThrow(() => checkEncryptionRouting('mtls', 'tunnel'));
  assert.doesNotThrow(() => checkEncryptionRouting('none', 'native'));
  assert.doesNotThrow(() => checkEncryptionRouting('mtls', undefined));
});

// `weir cni install|uninstall` on temporary directories (never the machine's /etc/cni/net.d or
// /opt/cni/bin): the config list a runtime reads, the plugin it executes (which answers VERSION),
// and an uninstall that removes only what install wrote.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { agentSocket } from '../../agent/paths.js';
import { isCode } from '../../shared/errors.js';
import { installCni, uninstallCni } from './cni.js';

describe('weir cni install|uninstall', () => {
  let dir = '';
  let dirs = { confDir: '', binDir: '' };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-cni-install-'));
    dirs = { confDir: join(dir, 'net.d'), binDir: join(dir, 'bin') };
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('writes the network config list and an executable plugin that answers VERSION', async () => {
    const r = await installCni({ ...dirs, lab: 'mylab', network: 'weir', cniVersion: '1.0.0' });
    assert.equal(r.conflist, join(dirs.confDir, '10-weir.conflist'));
    assert.deepEqual(JSON.parse(readFileSync(r.conflist, 'utf8')), {
      cniVersion: '1.0.0',
      name: 'weir',
      plugins: [{ type: 'weir-cni', agentSocket: agentSocket('mylab') }],
    });
    assert.equal(statSync(r.plugin).mode & 0o777, 0o755);
    const out = execFileSync(r.plugin, [], {
      env: { CNI_COMMAND: 'VERSION', PATH: process.env.PATH },
      input: '{"cniVersion":"1.0.0"}',
      encoding: 'utf8',
    });
    assert.deepEqual(JSON.parse(out), {
      cniVersion: '1.0.0',
      supportedVersions: ['0.4.0', '1.0.0', '1.1.0'],
    });
  });

  it('uninstall removes what install wrote, is idempotent, and leaves files that are not weir’s', async () => {
    const removed = await uninstallCni({ ...dirs, network: 'weir' });
    assert.deepEqual(removed, [join(dirs.confDir, '10-weir.conflist'), join(dirs.binDir, 'weir-cni')]);
    assert.deepEqual(await uninstallCni({ ...dirs, network: 'weir' }), []);
    const foreign = join(dirs.confDir, '10-weir.conflist');
    await writeFile(
      foreign,
      JSON.stringify({ cniVersion: '1.0.0', name: 'weir', plugins: [{ type: 'bridge' }] }),
    );
    await assert.rejects(uninstallCni({ ...dirs, network: 'weir' }), (e: unknown) => {
      assert.ok(isCode(e, 'ERR_CNI_INSTALL'));
      assert.match((e as Error).message, /not weir's network config/);
      return true;
    });
    assert.ok(existsSync(foreign), 'left alone');
  });
});

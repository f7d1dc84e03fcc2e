// The settings table (settings.ts): every flag parses and formats its own values, refuses bad ones
// naming the flag, keeps the defaults weir has always had, is stored only when persisted, and is
// the table of docs/agent.md.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { docSection } from '../shared/doc-section.js';
import { repoRoot } from '../shared/paths.js';
import {
  SETTINGS,
  checkSettings,
  defaultSettings,
  defaultValues,
  settingsArgv,
  settingsMarkdown,
  type Setting,
} from './settings.js';
import { FileStore } from '../store/file.js';
import { LocalState } from './local-state.js';

const all = SETTINGS as readonly Setting[];

describe('agent settings', () => {
  it('keeps every default weir had', () => {
    assert.deepEqual(defaultSettings, {
      policyMapMax: 16384,
      identityLabels: '',
      flowEvents: true,
      policyAuditMode: false,
      lbAlgorithm: 'random',
      maglevTableSize: 16381,
      maglevSeed: 'JLfvgnHc2kaSUFaI',
      lbMode: 'snat',
      hostRouting: 'bpf',
      socketLB: true,
      serviceCIDR: '10.96.0.0/16',
      serviceCIDRv6: 'fd00:10:96::/112',
      tofqdnsDnsRejectResponseCode: 'refused',
      proxyPortRange: '10000-20000',
      trustDomain: 'cluster.local',
    });
    assert.deepEqual(
      [
        defaultValues.ctGcInterval,
        defaultValues.flows,
        defaultValues.flowQueue,
        defaultValues.eventsBufferBytes,
      ],
      [30, 4095, 1024, 4 << 20],
    );
  });

  it('declares each flag once; every default parses back from its flag text and passes its check', () => {
    assert.equal(new Set(all.map((s) => s.flag)).size, all.length);
    assert.equal(new Set(all.map((s) => s.key)).size, all.length);
    for (const s of all) {
      assert.deepEqual(s.parse(s.format(s.default)), s.default, s.flag);
      s.check(s.default);
    }
    assert.deepEqual(settingsArgv({ socketLB: false, serviceCIDRv6: '', flows: 8191 }), [
      '--socket-lb',
      'off',
      '--service-cidr-v6',
      'none',
      '--flows',
      '8191',
    ]);
  });

  it('refuses bad values naming the flag, from a flag or from stored state', () => {
    const bad: [string, string][] = [
      ['--policy-map-max', '255'],
      ['--policy-map-max', '1e4'],
      ['--socket-lb', 'maybe'],
      ['--lb-mode', 'nat'],
      ['--flows', '0'],
    ];
    for (const [flag, text] of bad) {
      const s = all.find((x) => x.flag === flag);
      assert.ok(s, flag);
      assert.throws(
        () => s.parse(text),
        { code: 'ERR_CLI_OPTION', location: { field: flag } },
        `${flag} ${text}`,
      );
    }
    assert.throws(() => checkSettings({ eventsBufferBytes: 3 << 20 }), {
      location: { field: '--events-buffer' },
    });
    assert.throws(() => checkSettings({ serviceCIDR: '10.96.0.0/31' }), {
      location: { field: '--service-cidr' },
    });
    assert.throws(() => checkSettings({ maglevSeed: 'short' }), { location: { field: '--lb-maglev-seed' } });
    assert.throws(() => checkSettings({ identityLabels: 'k8s:[' }), {
      location: { field: '--identity-labels' },
    });
  });

  it('stores persisted settings only: given ones win, stored ones stay, the rest take their default', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weir-settings-'));
    try {
      const path = join(dir, 'store.json');
      const store1 = await FileStore.open(path);
      const first = await LocalState.load(store1, 'node1');
      first.mergeSettings({ lbMode: 'dsr', policyMapMax: 1024 });
      await first.save();
      await store1.close();
      const store2 = await FileStore.open(path);
      const again = await LocalState.load(store2, 'node1');
      const s = again.mergeSettings({ policyMapMax: 2048, ...({ flows: 10 } as object) });
      await store2.close();
      assert.equal(s.lbMode, 'dsr', 'stored');
      assert.equal(s.policyMapMax, 2048, 'given');
      assert.equal(s.socketLB, true, 'default');
      assert.ok(!('flows' in s), 'a run-time setting is not stored');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is the settings table of docs/agent.md', () => {
    const file = join(repoRoot, 'docs', 'agent.md');
    assert.equal(docSection(file, 'agent-settings', settingsMarkdown()), settingsMarkdown());
  });
});

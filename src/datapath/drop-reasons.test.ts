// bpf/lib/drop_reasons.h is the source of truth; the TypeScript table must equal it row for row.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { docSection } from '../shared/doc-section.js';
import { repoRoot } from '../shared/paths.js';
import {
  DROP_REASONS,
  DropReason,
  REASON_FORWARDED,
  dropReasonsMarkdown,
  hubbleDropReason,
  hubbleDropText,
  reasonText,
} from './drop-reasons.js';

/** Every `#define DROP_<NAME> <code> /* <HUBBLE_ENUM> "<text>"… *\/` of the header. */
function headerRows(): { name: string; code: number; hubble: string; text: string }[] {
  const header = readFileSync(join(repoRoot, 'bpf', 'lib', 'drop_reasons.h'), 'utf8');
  const rows = [];
  for (const line of header.split('\n')) {
    if (!/^#define DROP_/.test(line)) continue;
    const m = /^#define DROP_(\w+)\s+(\d+)\s+\/\*\s*([A-Z0-9_]+)\s+"([^"]+)"/.exec(line);
    assert.ok(m, `bpf/lib/drop_reasons.h: '${line}' lacks /* HUBBLE_NAME "text" */`);
    rows.push({ name: m[1] ?? '', code: Number(m[2]), hubble: m[3] ?? '', text: m[4] ?? '' });
  }
  return rows.sort((a, b) => a.code - b.code);
}

it('is the table of bpf/lib/drop_reasons.h: names, codes, Hubble enum names and texts', () => {
  const inC = headerRows();
  assert.ok(inC.length > 10);
  const inTs = [...DROP_REASONS].map((r) => ({ ...r })).sort((a, b) => a.code - b.code);
  assert.deepEqual(inTs, inC);
  assert.equal(new Set(inTs.map((r) => r.code)).size, inTs.length, 'codes are unique');
  assert.equal(new Set(inTs.map((r) => r.hubble)).size, inTs.length, 'Hubble names are unique');
  const forwarded = /^#define REASON_FORWARDED (\d+)/m.exec(
    readFileSync(join(repoRoot, 'bpf', 'lib', 'drop_reasons.h'), 'utf8'),
  );
  assert.equal(Number(forwarded?.[1]), REASON_FORWARDED);
});

it('answers by code, by name and by Hubble name', () => {
  assert.equal(DropReason.POLICY, 133);
  assert.equal(reasonText(0), 'Forwarded');
  assert.equal(reasonText(181), 'Policy denied by denylist');
  assert.equal(reasonText(999), 'Unknown drop reason 999');
  assert.equal(hubbleDropReason(133), 'POLICY_DENIED');
  assert.equal(hubbleDropReason(999), 'DROP_REASON_UNKNOWN');
  assert.equal(hubbleDropText('ENDPOINT_NOT_READY'), 'Endpoint not ready');
  assert.equal(hubbleDropText('NOPE'), undefined);
});

it('is the drop reason table of docs/datapath.md', () => {
  const file = join(repoRoot, 'docs', 'datapath.md');
  assert.equal(docSection(file, 'drop-reasons', dropReasonsMarkdown()), dropReasonsMarkdown());
});

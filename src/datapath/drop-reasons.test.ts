import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../shared/paths.js';
import { DropReason, reasonText } from './drop-reasons.js';

it('has exactly the codes of bpf/lib/drop_reasons.h', () => {
  const header = readFileSync(join(repoRoot, 'bpf', 'lib', 'drop_reasons.h'), 'utf8');
  const inC = new Map<string, number>();
  for (const m of header.matchAll(/^#define DROP_(\w+)\s+(\d+)(?:\s+\/\*\s*"([^"]+)")?/gm)) {
    const code = Number(m[2]);
    inC.set(m[1] ?? '', code);
    // The quoted text in the header's comment is what Hubble prints.
    if (m[3]) assert.equal(reasonText(code), m[3]);
    else assert.doesNotMatch(reasonText(code), /^Unknown drop reason/);
  }
  assert.ok(inC.size > 10);
  assert.deepEqual(new Map(Object.entries(DropReason)), inC);
  assert.equal(reasonText(0), 'Forwarded');
});

import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../shared/paths.js';
import { PROXY_ROUTE_TABLE, ProxyMark } from './proxy-marks.js';

it('has exactly the MARK_MAGIC_* values and the route table of bpf/lib/common.h', () => {
  const header = readFileSync(join(repoRoot, 'bpf', 'lib', 'common.h'), 'utf8');
  const inC = new Map<string, number>();
  for (const m of header.matchAll(/^#define MARK_MAGIC_(\w+)\s+(0x[0-9A-Fa-f]+)/gm))
    inC.set(m[1] ?? '', Number(m[2]));
  assert.deepEqual(new Map(Object.entries(ProxyMark)), inC);
  const table = /^#define PROXY_ROUTE_TABLE\s+(\d+)/m.exec(header);
  assert.equal(Number(table?.[1]), PROXY_ROUTE_TABLE);
});

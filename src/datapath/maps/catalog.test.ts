// The map catalogue (catalog.ts) against the compiled objects: every object in dist/bpf is opened
// with libbpf (nothing is loaded, no privileges needed) and the maps of its `.maps` section must be
// exactly the ones the catalogue gives it, of the declared kind. Needs `make bpf`.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { BpfObject, MapType } from '../../bpf/index.js';
import { docSection } from '../../shared/doc-section.js';
import { repoRoot } from '../../shared/paths.js';
import { MAPS, mapTableMarkdown, objectMaps, pinnedMaps, reusedMaps, type ObjectName } from './catalog.js';

const bpfDir = join(repoRoot, 'dist', 'bpf');
/** Objects built from bpf/tests/*.c for the kernel-interface tests: not part of the datapath. */
const TEST_ONLY = new Set(['tests/kern_basics.o', 'tests/kern_verifier_fail.o']);
const DATAPATH: Record<string, ObjectName> = { 'lxc.o': 'lxc', 'sock.o': 'sock' };

const objects = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? objects(join(dir, e.name)) : e.name.endsWith('.o') ? [join(dir, e.name)] : [],
  );

const typeName = (n: number) => Object.entries(MapType).find(([, v]) => v === n)?.[0] ?? `type ${n}`;

describe('the map catalogue', () => {
  it('knows every object in dist/bpf (datapath objects, or test-only ones by name)', () => {
    const found = objects(bpfDir).map((f) => relative(bpfDir, f));
    assert.ok(found.includes('lxc.o') && found.includes('sock.o'), `dist/bpf holds ${found.join(', ')}`);
    for (const f of found)
      assert.ok(
        f in DATAPATH || TEST_ONLY.has(f),
        `dist/bpf/${f} is neither a datapath object nor test-only`,
      );
  });

  for (const [file, object] of Object.entries(DATAPATH)) {
    it(`declares exactly the maps of ${file}'s .maps section, with their kinds`, () => {
      const obj = BpfObject.open(join(bpfDir, file));
      try {
        const inElf = new Map(obj.declaredMaps().map((m) => [m.name, m.type]));
        const declared = new Set<string>(objectMaps(object));
        const undeclared = [...inElf.keys()].filter((n) => !declared.has(n));
        const missing = [...declared].filter((n) => !inElf.has(n));
        assert.deepEqual(undeclared, [], `maps of ${file} the catalogue does not declare`);
        assert.deepEqual(missing, [], `maps the catalogue gives ${file} that it does not have`);
        for (const m of MAPS) {
          const type = inElf.get(m.name);
          if (type === undefined) continue;
          assert.equal(typeName(type), m.kind, `${m.name} in ${file}`);
        }
      } finally {
        obj.close();
      }
    });
  }

  it('pins every lxc.o map that holds state; sock.o reuses lxc.o maps and owns none', () => {
    assert.ok(pinnedMaps('lxc').includes('weir_lb_ct'), 'the tc service translation survives a restart');
    assert.deepEqual(pinnedMaps('sock'), []);
    for (const name of reusedMaps('sock')) assert.ok(objectMaps('lxc').includes(name), name);
    const names = MAPS.map((m) => m.name);
    assert.equal(new Set(names).size, names.length, 'each map is declared once');
  });

  it('is the map table of docs/datapath.md', () => {
    assert.equal(
      docSection(join(repoRoot, 'docs', 'datapath.md'), 'maps', mapTableMarkdown()),
      mapTableMarkdown(),
    );
  });
});

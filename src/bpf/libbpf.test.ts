// The option structs in libbpf.ts must match /usr/include/bpf/*.h byte for byte: compile a
// program that prints sizeof/offsetof from the real headers and compare.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { run } from '../shared/exec.js';
import {
  BpfMapBatchOpts,
  BpfMapCreateOpts,
  BpfMapInfo,
  BpfObjectOpenOpts,
  BpfProgInfo,
  BpfTcHook,
  BpfTcOpts,
  BpfTestRunOpts,
  type Layout,
} from './libbpf.js';
import { SKB_CONTEXT_OFFSETS, SKB_CONTEXT_SIZE } from './program.js';

const checked: [string, Layout, string[], boolean][] = [
  [
    'bpf_object_open_opts',
    BpfObjectOpenOpts,
    ['object_name', 'pin_root_path', 'kernel_log_buf', 'kernel_log_size', 'kernel_log_level'],
    true,
  ],
  ['bpf_tc_hook', BpfTcHook, ['ifindex', 'attach_point', 'parent'], true],
  ['bpf_tc_opts', BpfTcOpts, ['prog_fd', 'flags', 'prog_id', 'handle', 'priority'], true],
  ['bpf_map_create_opts', BpfMapCreateOpts, ['inner_map_fd', 'map_flags', 'map_extra', 'map_ifindex'], true],
  ['bpf_map_batch_opts', BpfMapBatchOpts, ['elem_flags', 'flags'], true],
  [
    'bpf_test_run_opts',
    BpfTestRunOpts,
    [
      'data_in',
      'data_out',
      'data_size_in',
      'data_size_out',
      'ctx_in',
      'ctx_out',
      'ctx_size_in',
      'ctx_size_out',
      'retval',
      'repeat',
      'duration',
    ],
    true,
  ],
  [
    'bpf_map_info',
    BpfMapInfo,
    ['id', 'key_size', 'value_size', 'max_entries', 'map_flags', 'name', 'map_extra'],
    true,
  ],
  // Only the head of bpf_prog_info is mirrored: offsets must match, the size may be smaller.
  ['bpf_prog_info', BpfProgInfo, ['type', 'id', 'nr_map_ids', 'map_ids', 'name'], false],
];

const skbOffsets = SKB_CONTEXT_OFFSETS;

describe('libbpf option struct layouts', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-layout-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('match the installed libbpf and kernel headers', async () => {
    const lines = checked.flatMap(([name, , fields]) => [
      `printf("${name} size %zu\\n", sizeof(struct ${name}));`,
      ...fields.map((f) => `printf("${name} ${f} %zu\\n", offsetof(struct ${name}, ${f}));`),
    ]);
    lines.push('printf("__sk_buff size %zu\\n", sizeof(struct __sk_buff));');
    for (const f of Object.keys(skbOffsets))
      lines.push(`printf("__sk_buff ${f} %zu\\n", offsetof(struct __sk_buff, ${f}));`);
    const src = join(dir, 'layout.c');
    writeFileSync(
      src,
      `#include <stddef.h>\n#include <stdio.h>\n#include <bpf/libbpf.h>\n#include <bpf/bpf.h>\n` +
        `int main(void) {\n${lines.join('\n')}\nreturn 0;\n}\n`,
    );
    await run(['clang', '-o', join(dir, 'layout'), src]);
    const out = (await run([join(dir, 'layout')])).stdout;
    const c = new Map(
      out
        .trim()
        .split('\n')
        .map((l) => {
          const parts = l.split(' ');
          return [`${parts[0]} ${parts[1]}`, Number(parts[2])];
        }),
    );
    for (const [name, layout, fields, fullSize] of checked) {
      if (fullSize) assert.equal(layout.size, c.get(`${name} size`), `sizeof(struct ${name})`);
      for (const f of fields) assert.equal(layout.off(f), c.get(`${name} ${f}`), `offsetof(${name}, ${f})`);
    }
    assert.equal(SKB_CONTEXT_SIZE, c.get('__sk_buff size'));
    for (const [f, off] of Object.entries(skbOffsets))
      assert.equal(off, c.get(`__sk_buff ${f}`), `__sk_buff.${f}`);
  });
});

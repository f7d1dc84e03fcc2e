// Reading BTF through libbpf: struct layouts (checkLayout) and the variables of data sections
// (BpfObject.setConfig). Records are read straight from libbpf's parsed copy: struct btf_type
// {name_off, info, size|type} followed by vlen 3-word entries (btf_member, btf_var_secinfo).
import type { Codec, Padding, StructCodec } from './codec.js';
import { BpfError, ERR_BPF_LAYOUT, ERR_BPF_NOT_FOUND, bpfErrorFrom } from './errors.js';
import { lastErrno, libbpf, readU32s, type Ptr } from './libbpf.js';

export const BtfKind = { int: 1, struct: 4, union: 5, typedef: 8, var: 14, datasec: 15 } as const;

export interface BtfType {
  id: number;
  kind: number;
  name: string;
  /** size for struct/union/int/datasec, referenced type for typedef/var/ptr... */
  sizeOrType: number;
  kflag: boolean;
  /** struct/union members: offset in bits (with kflag, low 24 bits). datasec: vars with byte offsets. */
  entries: { name: string; type: number; offset: number; size: number }[];
}

export class Btf {
  private constructor(
    readonly handle: Ptr,
    private readonly owned: boolean,
  ) {}

  /** Parses the BTF of an ELF object file (or raw BTF). Close it when done. */
  static parseFile(path: string): Btf {
    const h = libbpf.btf_parse(path, null);
    if (!h) {
      throw bpfErrorFrom(lastErrno(), `btf__parse ${path}`, { location: { file: path } });
    }
    return new Btf(h, true);
  }

  /** BTF owned by a bpf_object: valid until the object is closed; close() is a no-op. */
  static borrowed(handle: Ptr): Btf {
    return new Btf(handle, false);
  }

  find(name: string, kind: number): BtfType | undefined {
    const id = libbpf.btf_find_by_name_kind(this.handle, name, kind);
    return id > 0 ? this.type(id) : undefined;
  }

  type(id: number): BtfType {
    const p = libbpf.btf_type_by_id(this.handle, id);
    if (!p) throw new BpfError(ERR_BPF_NOT_FOUND, `BTF type id ${id} does not exist`);
    const head = readU32s(p, 3);
    const info = head[1] ?? 0;
    const kind = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    const t: BtfType = {
      id,
      kind,
      name: this.name(head[0] ?? 0),
      sizeOrType: head[2] ?? 0,
      kflag: info >>> 31 === 1,
      entries: [],
    };
    if (kind === BtfKind.struct || kind === BtfKind.union || kind === BtfKind.datasec) {
      const words = readU32s(p, 3 + 3 * vlen);
      for (let i = 0; i < vlen; i++) {
        const [nameOff = 0, type = 0, third = 0] = words.subarray(3 + 3 * i, 6 + 3 * i);
        if (kind === BtfKind.datasec) {
          // btf_var_secinfo {type, offset, size}: name it after its VAR.
          const v = this.type(nameOff);
          t.entries.push({ name: v.name, type: v.sizeOrType, offset: type, size: third });
        } else {
          t.entries.push({ name: this.name(nameOff), type, offset: third, size: this.size(type) });
        }
      }
    }
    return t;
  }

  size(id: number): number {
    const s = Number(libbpf.btf_resolve_size(this.handle, id));
    if (s < 0) throw bpfErrorFrom(s, `btf__resolve_size(${id})`);
    return s;
  }

  name(off: number): string {
    return off ? (libbpf.btf_name_by_offset(this.handle, off) ?? '') : '';
  }

  close(): void {
    if (this.owned) libbpf.btf_free(this.handle);
  }
}

/** "prefixLen" and "prefix_len" name the same field. */
function normalize(name: string): string {
  return name.replace(/_/g, '').toLowerCase();
}

/**
 * Fails with ERR_BPF_LAYOUT unless `codec` has the size and field offsets of `struct structName`
 * in the BTF of the compiled object at `objectPath`. TypeScript fields match C members by name,
 * ignoring case and underscores; C members without a TypeScript field must lie inside pad().
 */
export function checkLayout(
  codec: StructCodec<Record<string, Codec<unknown>>>,
  objectPath: string,
  structName: string,
): void {
  const btf = Btf.parseFile(objectPath);
  try {
    const where = { file: objectPath, object: `struct ${structName}` };
    const t = btf.find(structName, BtfKind.struct);
    if (!t) throw new BpfError(ERR_BPF_NOT_FOUND, `no struct ${structName} in the BTF`, { location: where });
    const problems: string[] = [];
    if (t.sizeOrType !== codec.size)
      problems.push(`size is ${t.sizeOrType} in C, ${codec.size} in TypeScript`);
    const members = new Map(t.entries.filter((m) => m.name).map((m) => [normalize(m.name), m]));
    const pads: [number, number][] = [];
    for (const [key, c] of Object.entries(codec.fields)) {
      const off = codec.offsets[key] ?? 0;
      if ((c as Partial<Padding>).padding) {
        pads.push([off, off + c.size]);
        continue;
      }
      const m = members.get(normalize(key));
      if (!m) {
        problems.push(`field '${key}' has no member in C`);
        continue;
      }
      members.delete(normalize(key));
      const bitOff = t.kflag ? m.offset & 0xffffff : m.offset;
      if (bitOff % 8 !== 0) problems.push(`field '${key}' is a bitfield in C`);
      if (bitOff / 8 !== off)
        problems.push(`field '${key}' is at offset ${bitOff / 8} in C, ${off} in TypeScript`);
      if (m.size !== c.size) problems.push(`field '${key}' is ${m.size} bytes in C, ${c.size} in TypeScript`);
    }
    for (const m of members.values()) {
      const start = (t.kflag ? m.offset & 0xffffff : m.offset) / 8;
      const covered = pads.some(([a, b]) => start >= a && start + m.size <= b);
      if (!covered) problems.push(`C member '${m.name}' (offset ${start}) has no TypeScript field or pad()`);
    }
    if (problems.length) {
      throw new BpfError(
        ERR_BPF_LAYOUT,
        `${codec.name} does not match struct ${structName}: ${problems.join('; ')}`,
        {
          location: where,
          details: { problems },
        },
      );
    }
  } finally {
    btf.close();
  }
}

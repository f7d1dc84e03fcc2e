// A compiled BPF ELF object, opened with libbpf. Two phases, as in libbpf and cilium/ebpf:
//   open()  parses the ELF (no kernel objects yet); setConfig/setMapMaxEntries/reuseOrPinMap
//           shape what will be created;
//   load()  creates maps, loads programs (verifier), pins what reuseOrPinMap asked for.
// After load, program()/map() hand out borrowed handles valid until close(). close() releases
// every fd of the object; pinned maps stay in bpffs, attached programs stay attached.
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import { Btf, BtfKind, type BtfType } from './btf.js';
import {
  BpfError,
  ERR_BPF_CODEC,
  ERR_BPF_NOT_FOUND,
  ERR_BPF_STATE,
  VerifierError,
  bpfErrorFrom,
  errnoName,
} from './errors.js';
import {
  BpfObjectOpenOpts,
  captureLibbpf,
  cString,
  lastErrno,
  libbpf,
  readNative,
  stableBuffer,
  type Ptr,
} from './libbpf.js';
import { BpfMap } from './map.js';
import { BpfProgram } from './program.js';

export const ERR_BPF_MAP_INCOMPATIBLE = 'ERR_BPF_MAP_INCOMPATIBLE';

export interface OpenOptions {
  /** Overrides the object name (default: the file's base name); prefixes internal map names. */
  objectName?: string;
  /** Bytes kept for the verifier log of a failed load (default 1 MiB; the kernel keeps the tail). */
  logSize?: number;
}

export type ConfigValue = number | bigint | boolean | Buffer;

interface Variable {
  /** The data section (".rodata", ".bss", ".data", ".rodata.config", ...). */
  section: string;
  offset: number;
  size: number;
}

type State = 'opened' | 'loaded' | 'closed';

export class BpfObject {
  readonly path: string;
  readonly name: string;
  #obj: Ptr | null;
  #state: State = 'opened';
  #logBuf: Buffer | null;
  readonly #programs = new Map<string, Ptr>();
  readonly #maps = new Map<string, Ptr>();
  /** Internal maps (.rodata, .bss, ...) by the section they hold. */
  readonly #sections = new Map<string, Ptr>();
  readonly #variables = new Map<string, Variable>();
  readonly #toPin = new Map<string, string>();
  readonly #programHandles = new Map<string, BpfProgram>();
  readonly #mapHandles = new Map<string, BpfMap>();

  private constructor(path: string, obj: Ptr, logBuf: Buffer) {
    this.path = path;
    this.#obj = obj;
    this.#logBuf = logBuf;
    for (let p = libbpf.object_next_program(obj, null); p; p = libbpf.object_next_program(obj, p)) {
      this.#programs.set(libbpf.program_name(p), p);
    }
    const btfHandle = libbpf.object_btf(obj);
    const btf = btfHandle ? Btf.borrowed(btfHandle) : undefined;
    for (let m = libbpf.object_next_map(obj, null); m; m = libbpf.object_next_map(obj, m)) {
      this.#maps.set(libbpf.map_name(m), m);
      const sec = btf && libbpf.map_is_internal(m) ? sectionOf(btf, m) : undefined;
      if (!sec) continue;
      this.#sections.set(sec.name, m);
      for (const v of sec.entries)
        this.#variables.set(v.name, { section: sec.name, offset: v.offset, size: v.size });
    }
    this.name = basename(path).replace(/\.o$/, '');
  }

  /** Parses the ELF object at `path`; nothing is created in the kernel yet. */
  static open(path: string, opts: OpenOptions = {}): BpfObject {
    const o = BpfObjectOpenOpts.alloc();
    const logBuf = stableBuffer(opts.logSize ?? 1 << 20);
    const nameBuf = opts.objectName ? stableBuffer(Buffer.byteLength(opts.objectName) + 1) : null;
    if (nameBuf && opts.objectName) nameBuf.write(opts.objectName);
    BpfObjectOpenOpts.ptr(o, 'object_name', nameBuf);
    BpfObjectOpenOpts.ptr(o, 'kernel_log_buf', logBuf);
    BpfObjectOpenOpts.u64(o, 'kernel_log_size', BigInt(logBuf.length));
    const { result: obj, messages } = captureLibbpf(() => {
      const h = libbpf.object_open_file(path, o);
      return { h, errno: h ? 0 : lastErrno() };
    });
    if (!obj.h) {
      throw bpfErrorFrom(
        obj.errno,
        `open BPF object ${path}: ${messages.slice(-3).join(' | ') || 'failed'}`,
        {
          location: { file: path },
          details: { libbpf: messages },
        },
      );
    }
    return new BpfObject(path, obj.h, logBuf);
  }

  #handle(want: State): Ptr {
    if (this.#state !== want || !this.#obj) {
      const why =
        this.#state === 'closed'
          ? 'is closed'
          : want === 'opened'
            ? 'is already loaded'
            : 'is not loaded yet';
      throw new BpfError(ERR_BPF_STATE, `BPF object ${this.path} ${why}`, { location: { file: this.path } });
    }
    return this.#obj;
  }

  #mapPtr(name: string): Ptr {
    const m = this.#maps.get(name) ?? this.#sections.get(name);
    if (!m) {
      throw new BpfError(
        ERR_BPF_NOT_FOUND,
        `no map '${name}' in ${this.path} (maps: ${[...this.#maps.keys(), ...this.#sections.keys()].join(', ')})`,
        { location: { file: this.path, object: name } },
      );
    }
    return m;
  }

  /** Names of the object's global variables, by data section. */
  variables(): ReadonlyMap<string, Readonly<Variable>> {
    return this.#variables;
  }

  /**
   * Sets `volatile const` globals (load-time configuration) before load. Every name must be a
   * variable of a .rodata* section; numbers/booleans are written in host order at the
   * variable's size, Buffers must have exactly its size. All values are checked first, so a bad
   * one leaves everything unchanged.
   */
  setConfig(vars: Record<string, ConfigValue>): void {
    this.#handle('opened');
    const planned: { map: Ptr; v: Variable; bytes: Buffer }[] = [];
    for (const [name, value] of Object.entries(vars)) {
      const where = { file: this.path, object: this.name, field: name };
      const v = this.#variables.get(name);
      if (!v || !v.section.startsWith('.rodata')) {
        const known = [...this.#variables].filter(([, x]) => x.section.startsWith('.rodata')).map(([n]) => n);
        throw new BpfError(
          ERR_BPF_NOT_FOUND,
          `no config variable '${name}' (volatile const in .rodata) in ${this.path}; known: ${known.join(', ') || 'none'}`,
          { location: where },
        );
      }
      const map = this.#sections.get(v.section);
      if (!map) throw new BpfError(ERR_BPF_NOT_FOUND, `no map for section ${v.section}`, { location: where });
      planned.push({ map, v, bytes: encodeConfig(value, v.size, where) });
    }
    const images = new Map<Ptr, Buffer>();
    for (const { map, v, bytes } of planned) {
      let img = images.get(map);
      if (!img) {
        const size: [number] = [0];
        const p = libbpf.map_initial_value(map, size);
        if (!p) throw new BpfError(ERR_BPF_STATE, `section ${v.section} has no initial value`);
        img = readNative(p, size[0]);
        images.set(map, img);
      }
      bytes.copy(img, v.offset);
    }
    for (const [map, img] of images) {
      const r = libbpf.map_set_initial_value(map, img, img.length);
      if (r < 0) throw bpfErrorFrom(r, `set initial value of ${libbpf.map_name(map)}`);
    }
  }

  /** Changes a map's size before load (e.g. from agent configuration). */
  setMapMaxEntries(name: string, n: number): void {
    this.#handle('opened');
    const r = libbpf.map_set_max_entries(this.#mapPtr(name), n);
    if (r < 0)
      throw bpfErrorFrom(r, `set max_entries of map '${name}'`, {
        location: { file: this.path, object: name },
      });
  }

  /**
   * Shares map `name` through a pin at `pinPath` (like libbpf's pinning, with our own paths): if a
   * map is pinned there and has the same type, key/value size, max entries and flags, load()
   * uses it instead of creating one; otherwise load() creates the map and pins it there. A pinned
   * map of another shape is an ERR_BPF_MAP_INCOMPATIBLE error (remove the pin to migrate).
   */
  reuseOrPinMap(name: string, pinPath: string): void {
    this.#handle('opened');
    const m = this.#mapPtr(name);
    if (!existsSync(pinPath)) {
      this.#toPin.set(name, pinPath);
      return;
    }
    const pinned = BpfMap.fromPin(pinPath);
    try {
      const want = {
        type: libbpf.map_type(m),
        keySize: libbpf.map_key_size(m),
        valueSize: libbpf.map_value_size(m),
        maxEntries: libbpf.map_max_entries(m),
        flags: libbpf.map_flags(m),
      };
      const diff = (Object.keys(want) as (keyof typeof want)[]).filter((k) => pinned[k] !== want[k]);
      if (diff.length) {
        throw new BpfError(
          ERR_BPF_MAP_INCOMPATIBLE,
          `map '${name}' pinned at ${pinPath} differs in ${diff.map((k) => `${k} (${pinned[k]} pinned, ${want[k]} wanted)`).join(', ')}`,
          { location: { file: pinPath, object: name } },
        );
      }
      // libbpf dup()s the fd, so ours is closed below either way.
      const r = libbpf.map_reuse_fd(m, pinned.fd);
      if (r < 0)
        throw bpfErrorFrom(r, `reuse pinned map ${pinPath}`, { location: { file: pinPath, object: name } });
    } finally {
      pinned.close();
    }
  }

  /**
   * Makes load() use `map` (e.g. one of another loaded object, so both share it) for map `name`.
   * The kernel checks the shapes at load.
   */
  reuseMap(name: string, map: BpfMap): void {
    this.#handle('opened');
    const r = libbpf.map_reuse_fd(this.#mapPtr(name), map.fd);
    if (r < 0) throw bpfErrorFrom(r, `reuse map ${name}`, { location: { object: name } });
  }

  /** Creates maps and loads programs. A verifier rejection throws VerifierError (with the log). */
  load(): void {
    const obj = this.#handle('opened');
    const { result: r, messages } = captureLibbpf(() => libbpf.object_load(obj));
    const log = this.#logBuf ? cString(this.#logBuf, 0, this.#logBuf.length) : '';
    // libbpf reads the log buffer only while loading, and a bpf_object loads at most once.
    this.#logBuf = null;
    if (r < 0) {
      // After a failed load libbpf has already released the kernel objects; only close remains.
      this.close();
      const prog = /prog '([^']+)': (BPF program load failed|failed to load)/.exec(messages.join('\n'))?.[1];
      if (prog && log.trim()) throw new VerifierError(prog, -r, log, { file: this.path });
      throw bpfErrorFrom(r, `load ${this.path}: ${messages.slice(-4).join(' | ') || errnoName(r)}`, {
        location: { file: this.path },
        details: { libbpf: messages, log },
      });
    }
    this.#state = 'loaded';
    for (const [name, path] of this.#toPin) {
      try {
        this.map(name).pin(path);
      } catch (err) {
        this.close();
        throw err;
      }
    }
  }

  /** A loaded program (borrowed: valid until close()). */
  program(name: string): BpfProgram {
    this.#handle('loaded');
    let h = this.#programHandles.get(name);
    if (!h) {
      const p = this.#programs.get(name);
      if (!p) {
        throw new BpfError(
          ERR_BPF_NOT_FOUND,
          `no program '${name}' in ${this.path} (programs: ${[...this.#programs.keys()].join(', ')})`,
          { location: { file: this.path, object: name } },
        );
      }
      h = new BpfProgram(libbpf.program_fd(p), name, libbpf.program_type(p), false);
      this.#programHandles.set(name, h);
    }
    return h;
  }

  /** A map by name, or a data section by its name ('.bss', '.data', '.rodata'); borrowed. */
  map(name: string): BpfMap {
    this.#handle('loaded');
    let h = this.#mapHandles.get(name);
    if (!h) {
      const m = this.#mapPtr(name);
      h = new BpfMap(
        libbpf.map_fd(m),
        {
          name: libbpf.map_name(m),
          type: libbpf.map_type(m),
          keySize: libbpf.map_key_size(m),
          valueSize: libbpf.map_value_size(m),
          maxEntries: libbpf.map_max_entries(m),
          flags: libbpf.map_flags(m),
        },
        false,
      );
      this.#mapHandles.set(name, h);
    }
    return h;
  }

  /** Where a global variable lives after load: its section's map (one element, key 0) and offset. */
  variable(name: string): { map: BpfMap; offset: number; size: number } {
    const v = this.#variables.get(name);
    if (!v) throw new BpfError(ERR_BPF_NOT_FOUND, `no global variable '${name}' in ${this.path}`);
    return { map: this.map(v.section), offset: v.offset, size: v.size };
  }

  programs(): BpfProgram[] {
    return [...this.#programs.keys()].map((n) => this.program(n));
  }

  /**
   * The maps the object declares in its `.maps` section (not its data sections), as the ELF
   * describes them: usable before load, e.g. to check an object against a catalogue.
   */
  declaredMaps(): { name: string; type: number; keySize: number; valueSize: number; maxEntries: number }[] {
    if (!this.#obj) this.#handle('opened');
    return [...this.#maps]
      .filter(([, m]) => !libbpf.map_is_internal(m))
      .map(([name, m]) => ({
        name,
        type: libbpf.map_type(m),
        keySize: libbpf.map_key_size(m),
        valueSize: libbpf.map_value_size(m),
        maxEntries: libbpf.map_max_entries(m),
      }));
  }

  /** Every map, data sections included. */
  maps(): BpfMap[] {
    return [...this.#maps.keys()].map((n) => this.map(n));
  }

  /** Releases the object and all its fds. Idempotent. Pins and attachments stay. */
  close(): void {
    if (!this.#obj) return;
    for (const h of this.#programHandles.values()) h.close();
    for (const h of this.#mapHandles.values()) h.close();
    libbpf.object_close(this.#obj);
    this.#obj = null;
    this.#state = 'closed';
    this.#logBuf = null;
  }
}

/** The DATASEC of an internal map (libbpf records it as the map's BTF value type). */
function sectionOf(btf: Btf, m: Ptr): BtfType | undefined {
  const id = libbpf.map_btf_value_type_id(m);
  if (!id) return undefined;
  const t = btf.type(id);
  return t.kind === BtfKind.datasec ? t : undefined;
}

function encodeConfig(
  value: ConfigValue,
  size: number,
  where: { file: string; object: string; field: string },
): Buffer {
  const fail = (why: string) =>
    new BpfError(ERR_BPF_CODEC, `config '${where.field}': ${why}`, { location: where });
  if (Buffer.isBuffer(value)) {
    if (value.length !== size) throw fail(`got ${value.length} bytes, the variable has ${size}`);
    return Buffer.from(value);
  }
  const n = typeof value === 'boolean' ? BigInt(value ? 1 : 0) : BigInt(value);
  if (typeof value === 'number' && !Number.isInteger(value)) throw fail(`${value} is not an integer`);
  if (size > 8 || ![1, 2, 4, 8].includes(size)) throw fail(`a ${size}-byte variable needs a Buffer`);
  const bits = BigInt(size * 8);
  if (n < -(1n << (bits - 1n)) || n >= 1n << bits) throw fail(`${value} does not fit in ${size} bytes`);
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt.asUintN(64, n));
  return Buffer.from(b.subarray(0, size));
}

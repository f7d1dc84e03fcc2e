// Reading a BPF_MAP_TYPE_RINGBUF map by mmap, without blocking the event loop and without an
// allocation per record.
//
// The kernel's layout (kernel/bpf/ringbuf.c, what libbpf's ring_buffer__consume reads):
//
//   offset 0          one page, read-write: consumer_pos (u64)          <- we advance it
//   offset page       one page, read-only:  producer_pos (u64)          <- the kernel advances it
//   offset 2 * page   the data area, max_entries bytes, mapped TWICE in a row (read-only), so a
//                     record that wraps past the end is still contiguous in our view
//
//   each record: [ u32 len | BUSY (1<<31) | DISCARD (1<<30) ][ u32 pg_off ][ len bytes ] pad to 8
//
//   data:  ... | rec n (done) | rec n+1 (BUSY: reserved, not yet submitted) | rec n+2 (done) | ...
//                ^ consumer_pos                                  we stop at the first BUSY record
//
// Positions only grow; a position's offset in the area is `pos & (max_entries - 1)`. A drain reads
// producer_pos once (acquire), hands each submitted record to the callback as an offset into one
// Uint8Array over the mapping (no copy, no object), skips discarded ones, and stores consumer_pos
// once at the end (release): the kernel reuses the space only then. Positions are u64; they are
// read as bigint once per drain (not per record) and handled as numbers (exact up to 2^53 bytes).
//
// Wake-ups: the map fd is pollable (readable while producer_pos != consumer_pos). It is watched by
// libuv itself (koffi.node.poll: a uv_poll_t on the main loop, level-triggered), so the reader costs
// nothing while the ring is empty and closes at once. The kernel notifies when a record is
// submitted with BPF_RB_FORCE_WAKEUP, or (flags 0, adaptive) when the consumer has caught up with
// the record it commits; level triggering picks up records committed while a drain ran. A producer
// may submit with BPF_RB_NO_WAKEUP to spare the wake-ups of a busy stream (weir's datapath does,
// bpf/lib/events.h): with `flushMs` the reader keeps draining until flushMs after the last drain
// that found records, so a record submitted without a wake-up less than flushMs after one that woke
// the reader is read within flushMs, and an idle reader has no timer. koffi.node.poll is young (koffi 2.15) and marked as
// subject to change; package-lock pins koffi.
import koffi from 'koffi';
import { BpfError, ERR_BPF_CODEC, ERR_BPF_STATE, bpfErrorFrom } from './errors.js';
import { lastErrno, libcFns, type Ptr } from './libbpf.js';
import { MapType, type BpfMap } from './map.js';

const PROT_READ = 0x1;
const PROT_WRITE = 0x2;
const MAP_SHARED = 0x01;
const BUSY_BIT = 0x80000000;
const DISCARD_BIT = 0x40000000;
const HEADER = 8;

/**
 * A record handler: `data` is a view over the mapped ring, the record's bytes are
 * data[offset .. offset + length). The view is valid only during the call (copy what you keep);
 * `offset` is 8-byte aligned.
 */
export type RecordView = (data: Uint8Array, offset: number, length: number) => void;

let pageSize = 0;
const mapFailed = (p: Ptr | null) => p === null || koffi.address(p) === 0xffffffffffffffffn;

/** Zero-copy consumer of a ring buffer map (see the layout above). */
export class RingBufferConsumer {
  /** Records delivered so far (discarded ones are not counted). */
  records = 0;
  /** Payload bytes delivered so far. */
  bytes = 0;
  readonly #map: BpfMap;
  readonly #onRecord: RecordView;
  readonly #size: number;
  #consumerPage: Ptr | null = null;
  #producerPages: Ptr | null = null;
  #consumerPos: BigUint64Array | null = null;
  #producerPos: BigUint64Array | null = null;
  #data: Uint8Array | null = null;
  #poll: koffi.node.PollHandle | null = null;
  #flush: NodeJS.Timeout | null = null;
  readonly #flushMs: number;
  #lastFound = -Infinity;
  #closed = false;

  /**
   * Does not own `map` (keep it open while reading). `flushMs` (> 0): keep draining until that many
   * ms after the last drain that found records (for producers that submit without a wake-up).
   */
  constructor(map: BpfMap, onRecord: RecordView, opts: { flushMs?: number } = {}) {
    if (map.type !== MapType.ringbuf) {
      throw new BpfError(ERR_BPF_CODEC, `map '${map.name}' is not a ring buffer (type ${map.type})`, {
        location: { object: map.name },
      });
    }
    this.#map = map;
    this.#onRecord = onRecord;
    this.#size = map.maxEntries;
    this.#flushMs = opts.flushMs ?? 0;
  }

  /** Maps the ring and starts watching it; records arrive from the event loop. */
  start(): void {
    if (this.#closed)
      throw new BpfError(ERR_BPF_STATE, `ring buffer reader of '${this.#map.name}' is closed`);
    if (this.#data) return;
    this.#mmap();
    this.#poll = koffi.node.poll(this.#map.fd, { readable: true }, () => this.#drainAndFlush());
  }

  /** Drains, and keeps draining until flushMs after the last drain that found records. */
  #drainAndFlush(): void {
    if (this.drain() > 0) this.#lastFound = performance.now();
    if (this.#flushMs <= 0 || this.#flush || this.#closed) return;
    const wait = this.#lastFound + this.#flushMs - performance.now();
    if (wait <= 0) return;
    this.#flush = setTimeout(() => {
      this.#flush = null;
      this.#drainAndFlush();
    }, Math.ceil(wait));
    this.#flush.unref();
  }

  #mmap(): void {
    if (pageSize === 0) pageSize = libcFns.getpagesize();
    const where = { location: { object: this.#map.name } };
    const cons = libcFns.mmap(null, pageSize, PROT_READ | PROT_WRITE, MAP_SHARED, this.#map.fd, 0);
    if (mapFailed(cons))
      throw bpfErrorFrom(lastErrno(), `mmap of ring buffer '${this.#map.name}' (consumer page)`, where);
    const prodLen = pageSize + 2 * this.#size;
    const prod = libcFns.mmap(null, prodLen, PROT_READ, MAP_SHARED, this.#map.fd, pageSize);
    if (mapFailed(prod)) {
      const errno = lastErrno();
      libcFns.munmap(cons as Ptr, pageSize);
      throw bpfErrorFrom(errno, `mmap of ring buffer '${this.#map.name}' (data pages)`, where);
    }
    this.#consumerPage = cons;
    this.#producerPages = prod;
    this.#consumerPos = new BigUint64Array(koffi.view(cons, 8));
    const all = koffi.view(prod, prodLen);
    this.#producerPos = new BigUint64Array(all, 0, 1);
    this.#data = new Uint8Array(all, pageSize, 2 * this.#size);
  }

  /** Delivers every record submitted now, synchronously; returns how many. */
  drain(): number {
    const data = this.#data;
    const consPos = this.#consumerPos;
    const prodPos = this.#producerPos;
    if (!data || !consPos || !prodPos) return 0;
    const mask = this.#size - 1;
    const words = new Uint32Array(data.buffer, data.byteOffset, data.byteLength >>> 2);
    let delivered = 0;
    let cons = Number(Atomics.load(consPos, 0));
    for (;;) {
      const prod = Number(Atomics.load(prodPos, 0));
      if (cons >= prod) break;
      const start = cons;
      while (cons < prod) {
        const off = cons & mask;
        const head = Atomics.load(words, off >>> 2);
        if (head & BUSY_BIT) break;
        const len = head & ~(BUSY_BIT | DISCARD_BIT);
        cons += (len + HEADER + 7) & ~7;
        if (head & DISCARD_BIT) continue;
        delivered++;
        this.records++;
        this.bytes += len;
        try {
          this.#onRecord(data, off + HEADER, len);
        } catch (err) {
          // The failing record counts as consumed: it is not delivered twice.
          Atomics.store(consPos, 0, BigInt(cons));
          this.close();
          throw err;
        }
      }
      if (cons === start) break; // the next record is still being written
      Atomics.store(consPos, 0, BigInt(cons));
    }
    return delivered;
  }

  /** Stops watching and unmaps the ring. Idempotent; records not yet read stay in the map. */
  close(): void {
    this.#closed = true;
    if (this.#flush) clearTimeout(this.#flush);
    this.#flush = null;
    this.#poll?.close();
    this.#poll = null;
    this.#data = null;
    this.#consumerPos = null;
    this.#producerPos = null;
    if (this.#consumerPage) libcFns.munmap(this.#consumerPage, pageSize);
    if (this.#producerPages) libcFns.munmap(this.#producerPages, pageSize + 2 * this.#size);
    this.#consumerPage = null;
    this.#producerPages = null;
  }
}

/** A consumer that hands each record over as its own Buffer (a copy): simple, one allocation each. */
export class RingBufferReader {
  readonly #consumer: RingBufferConsumer;

  /**
   * Does not own `map` (keep it open while reading). `onRecord` gets a copy of each record, in
   * ring order; if it throws, reading stops and the error is rethrown from the poll callback
   * (an uncaught exception, as for any event handler).
   */
  constructor(map: BpfMap, onRecord: (record: Buffer) => void) {
    this.#consumer = new RingBufferConsumer(map, (data, offset, length) =>
      onRecord(Buffer.from(data.subarray(offset, offset + length))),
    );
  }

  get records(): number {
    return this.#consumer.records;
  }

  get bytes(): number {
    return this.#consumer.bytes;
  }

  start(): void {
    this.#consumer.start();
  }

  drain(): number {
    return this.#consumer.drain();
  }

  close(): void {
    this.#consumer.close();
  }
}

// Reading a BPF_MAP_TYPE_RINGBUF map without ever blocking the event loop.
//
// How: libbpf's ring_buffer gives an epoll fd that becomes readable when records are waiting.
// That fd is watched by libuv itself (koffi.node.poll, a uv_poll_t on the main loop), and when it
// is readable ring_buffer__consume() runs on the main thread: it never waits, and calls our
// sample callback synchronously for each record, which copies the record into a Buffer.
// Why not a thread-pool epoll_wait(timeout) in a loop: it would hold one of libuv's four pool
// threads forever (starving fs/dns work), add up to `timeout` latency to close(), and wake up
// even when idle; the uv_poll handle costs nothing while the ring is empty and closes at once.
// koffi.node.poll is young (koffi 2.15) and marked as subject to change; package-lock pins koffi.
import koffi from 'koffi';
import { BpfError, ERR_BPF_CODEC, ERR_BPF_STATE, bpfErrorFrom } from './errors.js';
import { RingBufferSampleFn, lastErrno, libbpf, readNative, type Ptr } from './libbpf.js';
import { MapType, type BpfMap } from './map.js';

export class RingBufferReader {
  /** Records delivered so far. */
  records = 0;
  /** Payload bytes delivered so far. */
  bytes = 0;
  readonly #map: BpfMap;
  readonly #onRecord: (record: Buffer) => void;
  #rb: Ptr | null = null;
  #callback: koffi.IKoffiRegisteredCallback | null = null;
  #poll: koffi.node.PollHandle | null = null;
  #failure: unknown;
  #closed = false;

  /**
   * Does not own `map` (keep it open while reading). `onRecord` gets a copy of each record, in
   * ring order; if it throws, reading stops and the error is rethrown from the poll callback
   * (an uncaught exception, as for any event handler).
   */
  constructor(map: BpfMap, onRecord: (record: Buffer) => void) {
    if (map.type !== MapType.ringbuf) {
      throw new BpfError(ERR_BPF_CODEC, `map '${map.name}' is not a ring buffer (type ${map.type})`, {
        location: { object: map.name },
      });
    }
    this.#map = map;
    this.#onRecord = onRecord;
  }

  /** Starts watching the ring; records arrive from the event loop. */
  start(): void {
    if (this.#closed)
      throw new BpfError(ERR_BPF_STATE, `ring buffer reader of '${this.#map.name}' is closed`);
    if (this.#rb) return;
    this.#callback = koffi.register(
      (_ctx: unknown, data: unknown, size: number | bigint): number => this.#deliver(data, Number(size)),
      koffi.pointer(RingBufferSampleFn),
    );
    const rb = libbpf.ring_buffer_new(this.#map.fd, this.#callback, null, null);
    if (!rb) {
      const errno = lastErrno();
      koffi.unregister(this.#callback);
      this.#callback = null;
      throw bpfErrorFrom(errno, `ring_buffer__new for map '${this.#map.name}'`, {
        location: { object: this.#map.name },
      });
    }
    this.#rb = rb;
    this.#poll = koffi.node.poll(libbpf.ring_buffer_epoll_fd(rb), { readable: true }, () => this.drain());
  }

  /** Delivers every record waiting now, synchronously; returns how many. */
  drain(): number {
    if (!this.#rb) return 0;
    const n = libbpf.ring_buffer_consume(this.#rb);
    if (this.#failure !== undefined) {
      const err = this.#failure;
      this.#failure = undefined;
      this.close();
      throw err;
    }
    if (n < 0) throw bpfErrorFrom(n, `ring_buffer__consume for map '${this.#map.name}'`);
    return n;
  }

  #deliver(data: unknown, size: number): number {
    try {
      const record = readNative(data, size);
      this.records++;
      this.bytes += size;
      this.#onRecord(record);
      return 0;
    } catch (err) {
      this.#failure = err;
      return -1; // stops ring_buffer__consume
    }
  }

  /** Stops watching and frees libbpf's ring buffer. Idempotent; records not yet read stay in the map. */
  close(): void {
    this.#closed = true;
    this.#poll?.close();
    this.#poll = null;
    if (this.#rb) libbpf.ring_buffer_free(this.#rb);
    this.#rb = null;
    if (this.#callback) koffi.unregister(this.#callback);
    this.#callback = null;
  }
}

// The source ports accepted client connections use, for the upstream connector to avoid (see
// server.ts connect()). One proxy thread: exact, by (IP, port). Several (workers.ts): one count per
// port in a SharedArrayBuffer every thread updates with Atomics, by port alone — a port some
// client of any thread uses from any address is avoided by every thread, a few more ports than
// needed out of the ~12 700 of UPSTREAM_PORTS.
export interface ClientPorts {
  add(ip: string, port: number): void;
  remove(ip: string, port: number): void;
  has(ip: string, port: number): boolean;
}

export class LocalClientPorts implements ClientPorts {
  readonly #n = new Map<string, number>();
  add(ip: string, port: number): void {
    const key = `${ip}|${port}`;
    this.#n.set(key, (this.#n.get(key) ?? 0) + 1);
  }
  remove(ip: string, port: number): void {
    const key = `${ip}|${port}`;
    const n = (this.#n.get(key) ?? 1) - 1;
    if (n > 0) this.#n.set(key, n);
    else this.#n.delete(key);
  }
  has(ip: string, port: number): boolean {
    return this.#n.has(`${ip}|${port}`);
  }
}

export class SharedClientPorts implements ClientPorts {
  readonly #n: Int32Array;
  /** `buffer`: SharedClientPorts.buffer() of the process, the same in every thread. */
  constructor(buffer: SharedArrayBuffer) {
    this.#n = new Int32Array(buffer);
  }
  static buffer(): SharedArrayBuffer {
    return new SharedArrayBuffer(65536 * 4);
  }
  add(_ip: string, port: number): void {
    Atomics.add(this.#n, port & 0xffff, 1);
  }
  remove(_ip: string, port: number): void {
    Atomics.sub(this.#n, port & 0xffff, 1);
  }
  has(_ip: string, port: number): boolean {
    return Atomics.load(this.#n, port & 0xffff) > 0;
  }
}

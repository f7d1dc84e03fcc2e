// Writes of one turn of the event loop go out together: the first write to a socket in a turn
// corks it, and all corked sockets are uncorked once the turn's I/O callbacks have run
// (setImmediate). Each peer then gets its bytes in one burst of writes instead of one write per
// callback spread over the turn, and wakes fewer times (on loopback and veth a write wakes the
// reading process; a wake-up of an idle core was the largest kernel cost per request).
//
// Corked bytes sit in the socket's write buffer, and a socket's destroy() drops that buffer. So a
// socket is corked here only once its destroy() sends what it holds first (flushingDestroy, put on
// the socket itself by the first batched write): every way a socket is closed — destroy() by the
// engine or the handler, resetAndDestroy(), node destroying it after an error, destroySoon() and
// end() (which uncork by themselves) — behaves as if no write had been delayed. Nothing depends on
// each close path remembering to flush.
import { Socket } from 'node:net';

const socketDestroy = Socket.prototype.destroy;

let corked: Socket[] = [];
let scheduled = false;

/** Uncorks every socket corked this turn. */
function flush(): void {
  scheduled = false;
  const list = corked;
  corked = [];
  for (let i = 0; i < list.length; i++) uncorkAll(list[i] as Socket);
}

function uncorkAll(socket: Socket): void {
  while (socket.writableCorked > 0) socket.uncork();
}

/** The destroy() of a batched socket: what it holds corked goes out first. */
function flushingDestroy(this: Socket, err?: Error): Socket {
  if (this.writableCorked > 0) {
    flushedAtDestroy++;
    uncorkAll(this);
  }
  return socketDestroy.call(this, err);
}

/** Destroys that found bytes corked (and sent them first): a count for tests and diagnostics. */
export let flushedAtDestroy = 0;

/** socket.write(), corked until the end of this turn (strings are latin1). */
export function batchedWrite(socket: Socket, data: string | Buffer): boolean {
  if (socket.writableCorked === 0 && !socket.destroyed) {
    // Before the first cork: from now on a destroy sends what is corked.
    if (socket.destroy !== flushingDestroy) socket.destroy = flushingDestroy;
    socket.cork();
    corked.push(socket);
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  }
  return typeof data === 'string' ? socket.write(data, 'latin1') : socket.write(data);
}

/**
 * Makes `socket` batchable before its first write (the same object shape for every socket of a
 * kind from the start; batchedWrite() would do it on the first write otherwise).
 */
export function batchable(socket: Socket): void {
  if (socket.destroy !== flushingDestroy) socket.destroy = flushingDestroy;
}

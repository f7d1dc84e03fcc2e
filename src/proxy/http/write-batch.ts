// Writes of one turn of the event loop go out together: the first write to a socket in a turn
// corks it, and all corked sockets are uncorked once the turn's I/O callbacks have run
// (setImmediate). Each peer then gets its bytes in one burst of writes instead of one write per
// callback spread over the turn, and wakes fewer times (on loopback and veth a write wakes the
// reading process; a wake-up of an idle core was the largest kernel cost per request).
import type { Socket } from 'node:net';

const corked: Socket[] = [];
let scheduled = false;

function flush(): void {
  scheduled = false;
  for (let i = 0; i < corked.length; i++) (corked[i] as Socket).uncork();
  corked.length = 0;
}

/** socket.write(), corked until the end of this turn (strings are latin1). */
export function batchedWrite(socket: Socket, data: string | Buffer): boolean {
  if (socket.writableCorked === 0) {
    socket.cork();
    corked.push(socket);
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  }
  return typeof data === 'string' ? socket.write(data, 'latin1') : socket.write(data);
}

/** Sends what `socket` holds corked now (before a destroy, which would drop it). */
export function flushSocket(socket: Socket): void {
  while (socket.writableCorked > 0) socket.uncork();
}

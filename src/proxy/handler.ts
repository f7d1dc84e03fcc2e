// What the process side of the node proxy (server.ts) needs from a protocol handler: one per
// parser (HTTP today), built once with the upstream connector and a sink for L7 records, handed
// every accepted connection of a port with that parser. The HTTP engine (src/proxy/http) is one.
import type { Socket } from 'node:net';
import type { L7Record, ProxiedConnection, UpstreamConnector } from './types.js';

export interface ProtocolHandler {
  /** Takes over an accepted, identified connection (and its socket) until it ends. */
  handle(socket: Socket, conn: ProxiedConnection): void;
  /** Ends every connection it handles. */
  close(): Promise<void>;
}

export interface HandlerOptions {
  connector: UpstreamConnector;
  onRecord(r: L7Record): void;
}

export type HandlerFactory = (o: HandlerOptions) => ProtocolHandler;

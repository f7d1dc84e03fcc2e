// The interim protocol handler for ports with HTTP rules, until the HTTP engine (src/proxy/http)
// takes them: it relays bytes between the accepted socket and a transparent upstream connection
// and emits no L7 records. It cannot judge requests, so it fails closed: it relays only while every
// request of the connection would be allowed anyway (an applicable rule set without HTTP rules, or
// with an empty rule `{}`, which matches every request), checked at accept and again on every
// chunk the client sends (the snapshot may change); otherwise it resets both sides.
import type { Socket } from 'node:net';
import type { HttpRule, L7RuleSet, PortL7Policy } from '../policy/l7/types.js';
import type { HandlerOptions, ProtocolHandler } from './handler.js';
import type { ProxiedConnection } from './types.js';

const matchesEverything = (r: HttpRule) =>
  !r.method && !r.path && !r.host && !(r.headers?.length ?? 0) && !(r.headerMatches?.length ?? 0);

const applies = (s: L7RuleSet, identity: number) => !s.identities || s.identities.includes(identity);

/** Whether every request of a peer with `identity` on this port is allowed. */
export function allowsEverything(policy: PortL7Policy | undefined, identity: number): boolean {
  if (!policy) return false;
  return policy.ruleSets.some((s) => applies(s, identity) && (!s.http || s.http.some(matchesEverything)));
}

export function createL4Relay(o: HandlerOptions): ProtocolHandler {
  const open = new Set<Socket>();
  return {
    handle(socket: Socket, conn: ProxiedConnection): void {
      const allowed = () => allowsEverything(conn.policy(), conn.remoteIdentity);
      if (!allowed()) {
        socket.resetAndDestroy();
        return;
      }
      const up = o.connector(conn);
      open.add(socket);
      open.add(up);
      const end = () => {
        socket.destroy();
        up.destroy();
        open.delete(socket);
        open.delete(up);
      };
      socket.on('error', end);
      up.on('error', () => {
        // Refused or reset upstream: the client sees a reset, as from the server itself.
        if (!socket.destroyed) socket.resetAndDestroy();
        end();
      });
      socket.on('close', end);
      up.on('close', end);
      socket.on('data', () => {
        if (!allowed()) {
          socket.resetAndDestroy();
          up.resetAndDestroy();
        }
      });
      socket.pipe(up);
      up.pipe(socket);
    },
    async close(): Promise<void> {
      for (const s of open) s.destroy();
      open.clear();
    },
  };
}

// `weir ui --listen HOST:PORT`: the UI serves flows of every pod, so it listens on loopback only.
import { isIP } from 'node:net';
import { WeirError } from '../shared/errors.js';

export interface ListenAddress {
  host: string;
  port: number;
}

function isLoopback(host: string): boolean {
  if (isIP(host) === 4) return host.split('.')[0] === '127';
  return host === '::1';
}

/** '127.0.0.1:12000', '[::1]:12000', 'localhost:0' (port 0: any free port). */
export function parseListen(value: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || !host || !Number.isInteger(port) || port > 65535)
    throw new WeirError(
      'ERR_UI_LISTEN',
      `--listen must be HOST:PORT (e.g. 127.0.0.1:12000), not '${value}'`,
      {
        location: { field: '--listen' },
      },
    );
  const resolved = host === 'localhost' ? '127.0.0.1' : host;
  if (!isLoopback(resolved))
    throw new WeirError(
      'ERR_UI_LISTEN',
      `--listen ${value}: the UI shows every flow of the lab, so it listens on a loopback address only ` +
        `(127.0.0.0/8 or ::1)`,
      { location: { field: '--listen' } },
    );
  return { host: resolved, port };
}

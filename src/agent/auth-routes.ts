// The agent API of mutual authentication: `weir auth list` and `weir identity cert get`.
import { WeirError } from '../shared/errors.js';
import type { Route } from './api-server.js';
import type { AuthManager } from './auth.js';

export function authRoutes(auth: () => AuthManager | undefined): Route[] {
  const need = () => {
    const a = auth();
    if (!a) throw new WeirError('ERR_AGENT_NOT_READY', 'mutual authentication has not started yet');
    return a;
  };
  return [
    { method: 'GET', pattern: '/v1/auth', handler: () => need().status() },
    {
      method: 'GET',
      pattern: '/v1/identities/:id/cert',
      handler: (req) => {
        const id = req.params.id ?? '';
        if (!/^\d{1,10}$/.test(id))
          throw new WeirError('ERR_API_BAD_REQUEST', `'${id}' is not a numeric identity`, {
            location: { field: 'id' },
          });
        return need().cert(Number(id));
      },
    },
  ];
}

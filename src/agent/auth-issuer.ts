// Where a node's agent gets its SVIDs (src/agent/auth.ts SvidIssuer):
//
//   caNodeIssuer   the node that runs the CA (the lab's first node, where the API's CA directory
//                  is): issues from its CaStore, which rotates.
//   remoteIssuer   every other node: makes a key and a PKCS#10 request per identity here and asks
//                  the CA node's agent API to sign it (POST /v1/auth/svids, as ztunnel asks istiod
//                  with a CSR); the bundle comes from GET /v1/auth/ca, polled every second so a
//                  rotation reaches it. No file of the CA node is read, and no key is sent.
import type { CaStore } from '../auth/ca-store.js';
import { makeCsr, svidOf } from '../auth/ca.js';
import { WeirError } from '../shared/errors.js';
import type { AgentClient } from './client.js';
import type { SvidIssuer } from './auth.js';

export interface CaAnswer {
  trustDomain: string;
  bundlePem: string;
  signer: string;
}

/** POST /v1/auth/node-svids: a node's request for its own node SVID. */
export interface NodeSvidRequest {
  node: string;
  csrPem: string;
  ttlSeconds: number;
}

export interface SvidRequest {
  node: string;
  identity: number;
  csrPem: string;
  ttlSeconds: number;
}

export function caNodeIssuer(store: CaStore): SvidIssuer {
  return {
    bundle: () => store.bundlePem(),
    signer: () => store.current.fingerprint,
    issue: (td, id, ttl) => store.current.issue(td, id, ttl),
    issueNode: (td, node, ttl) => store.current.issueNode(td, node, ttl),
    refresh: () => {
      store.tick();
      return Promise.resolve();
    },
    caStatus: () => store.status(),
  };
}

/**
 * The remote issuer, not waiting for the CA node: until its API answered, the bundle is empty (the
 * listener refuses everyone, no handshake is tried: fail closed) and issuing fails.
 */
export function lazyRemoteIssuer(client: AgentClient, node: string): SvidIssuer {
  let ca: CaAnswer | undefined;
  const refresh = async () => {
    ca = await client.call<CaAnswer>('GET', '/v1/auth/ca');
  };
  /** The CA node's answer, fetched once; a trust domain other than its own is refused. */
  const sameTrustDomain = async (td: string): Promise<void> => {
    if (!ca) await refresh();
    const known = ca as CaAnswer;
    if (td !== known.trustDomain)
      throw new WeirError(
        'ERR_AUTH_TRUST_DOMAIN',
        `this node's trust domain '${td}' is not the CA node's '${known.trustDomain}'`,
        { location: { field: 'trustDomain' } },
      );
  };
  return {
    bundle: () => ca?.bundlePem ?? '',
    signer: () => ca?.signer ?? '',
    async issue(td, identity, ttlSeconds) {
      await sameTrustDomain(td);
      const { csrPem, keyPem } = await makeCsr(td, identity);
      const body: SvidRequest = { node, identity, csrPem, ttlSeconds };
      const ans = await client.call<{ certPem: string }>('POST', '/v1/auth/svids', body);
      return svidOf(identity, ans.certPem, keyPem);
    },
    async issueNode(td, name, ttlSeconds) {
      await sameTrustDomain(td);
      return nodeSvid(client, td, name, ttlSeconds);
    },
    refresh,
  };
}

/** The remote issuer, its bundle fetched once before it is returned. */
export async function remoteIssuer(client: AgentClient, node: string): Promise<SvidIssuer> {
  let ca = await client.call<CaAnswer>('GET', '/v1/auth/ca');
  return {
    bundle: () => ca.bundlePem,
    signer: () => ca.signer,
    async issue(td, identity, ttlSeconds) {
      if (td !== ca.trustDomain)
        throw new WeirError(
          'ERR_AUTH_TRUST_DOMAIN',
          `this node's trust domain '${td}' is not the CA node's '${ca.trustDomain}'`,
          { location: { field: 'trustDomain' } },
        );
      const { csrPem, keyPem } = await makeCsr(td, identity);
      const body: SvidRequest = { node, identity, csrPem, ttlSeconds };
      const ans = await client.call<{ certPem: string }>('POST', '/v1/auth/svids', body);
      return svidOf(identity, ans.certPem, keyPem);
    },
    issueNode: (td, name, ttlSeconds) => nodeSvid(client, td, name, ttlSeconds),
    async refresh() {
      ca = await client.call<CaAnswer>('GET', '/v1/auth/ca');
    },
  };
}

/** This node's node SVID from the CA node's API: a key and a CSR made here, the key kept here. */
async function nodeSvid(client: AgentClient, td: string, node: string, ttlSeconds: number) {
  const { csrPem, keyPem } = await makeCsr(td, { node });
  const body: NodeSvidRequest = { node, csrPem, ttlSeconds };
  const ans = await client.call<{ certPem: string }>('POST', '/v1/auth/node-svids', body);
  return { ...svidOf(0, ans.certPem, keyPem), node };
}

// The agent API of mutual authentication: `weir auth list`, `weir identity cert get`, and on the
// node that runs the CA: its bundle (GET /v1/auth/ca), SVIDs for other nodes' CSRs
// (POST /v1/auth/svids) and `weir identity ca rotate` (POST /v1/auth/ca/rotate).
import type { CaStore } from '../auth/ca-store.js';
import { WeirError } from '../shared/errors.js';
import type { Route } from './api-server.js';
import type { AuthManager } from './auth.js';
import type { CaAnswer, NodeSvidRequest, SvidRequest } from './auth-issuer.js';
import { isNodeName } from '../auth/spiffe.js';

/** What the CA node's routes need besides the manager. */
export interface CaRoutesContext {
  store: CaStore;
  trustDomain: string;
  /** Largest SVID lifetime a CSR may ask for (this node's --svid-ttl). */
  maxTtl: number;
  /** Registered nodes, and the identities allocated in the cluster. */
  nodes(): readonly string[];
  identities(): readonly number[];
  /**
   * The identities of the pods the Store's desired state places on `node` (spec.nodeName): a node
   * gets SVIDs for these only.
   */
  hostedBy(node: string): ReadonlySet<number>;
  /** Counts each request's outcome (weir_auth_svid_requests_total{result}). */
  count?(result: SvidRequestResult): void;
  log?: { warn(obj: object, msg: string): void };
}

/** Outcomes of POST /v1/auth/svids. */
export type SvidRequestResult = 'signed' | 'not-hosted' | 'unknown-node' | 'refused';

const bad = (field: string, msg: string) =>
  new WeirError('ERR_AUTH_CSR', msg, { location: { object: 'SVID request', field } });

export function authRoutes(
  auth: () => AuthManager | undefined,
  ca?: () => CaRoutesContext | undefined,
): Route[] {
  const need = () => {
    const a = auth();
    if (!a) throw new WeirError('ERR_AGENT_NOT_READY', 'mutual authentication has not started yet');
    return a;
  };
  const needCa = () => {
    const c = ca?.();
    if (!c)
      throw new WeirError('ERR_AUTH_NO_CA', "this node's agent does not run the CA: ask the first node's");
    return c;
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
    {
      method: 'GET',
      pattern: '/v1/nodes/:name/cert',
      handler: (req) => need().nodeCert(req.params.name ?? ''),
    },
    {
      method: 'GET',
      pattern: '/v1/auth/ca',
      handler: (): CaAnswer & { status: ReturnType<CaStore['status']> } => {
        const c = needCa();
        return {
          trustDomain: c.trustDomain,
          bundlePem: c.store.bundlePem(),
          signer: c.store.current.fingerprint,
          status: c.store.status(),
        };
      },
    },
    {
      method: 'POST',
      pattern: '/v1/auth/svids',
      handler: async (req) => {
        const c = needCa();
        try {
          const ans = await signRequest(c, (req.body ?? {}) as Partial<SvidRequest>);
          c.count?.('signed');
          return ans;
        } catch (err) {
          c.count?.(
            err instanceof WeirError && err.code === 'ERR_AUTH_CSR_NOT_HOSTED' ? 'not-hosted' : 'refused',
          );
          throw err;
        }
      },
    },
    {
      // A node's own SVID (spiffe://<td>/node/<name>): only for a node with a record in the
      // cluster's state (weir/state/nodes/v1/<name>).
      method: 'POST',
      pattern: '/v1/auth/node-svids',
      handler: async (req) => {
        const c = needCa();
        try {
          const ans = await signNodeRequest(c, (req.body ?? {}) as Partial<NodeSvidRequest>);
          c.count?.('signed');
          return ans;
        } catch (err) {
          c.count?.(
            err instanceof WeirError && err.code === 'ERR_AUTH_CSR_UNKNOWN_NODE' ? 'unknown-node' : 'refused',
          );
          throw err;
        }
      },
    },
    {
      method: 'POST',
      pattern: '/v1/auth/ca/rotate',
      handler: async (req) => {
        const c = needCa();
        const o = (req.body ?? {}) as { overlapSeconds?: unknown };
        const overlap = o.overlapSeconds === undefined ? 300 : o.overlapSeconds;
        if (typeof overlap !== 'number')
          throw new WeirError('ERR_AUTH_CA_ROTATE', 'overlapSeconds is not a number', {
            location: { field: 'overlapSeconds' },
          });
        const status = await c.store.rotate(overlap);
        // This node's SVIDs and pairs move to the new CA now (the others' at their next poll).
        void auth()?.tick();
        return status;
      },
    },
  ];
}

/** POST /v1/auth/svids: checks a node's request and signs it with the current CA. */
async function signRequest(
  c: CaRoutesContext,
  b: Partial<SvidRequest>,
): Promise<{ certPem: string; bundlePem: string }> {
  if (typeof b.node !== 'string' || !c.nodes().includes(b.node))
    throw bad('node', `node '${String(b.node)}' is not a registered node`);
  if (
    typeof b.identity !== 'number' ||
    !Number.isInteger(b.identity) ||
    b.identity < 256 ||
    b.identity > 0xffff
  )
    throw bad('identity', `identity '${String(b.identity)}' is not a pod identity (256..65535)`);
  if (!c.identities().includes(b.identity))
    throw bad('identity', `identity ${b.identity} is not allocated in the cluster`);
  // Istio's CA signs a workload's certificate only for a node that runs it: a node may
  // only obtain the SVIDs of its own pods' identities.
  if (!c.hostedBy(b.node).has(b.identity)) {
    c.log?.warn(
      { node: b.node, identity: b.identity },
      'auth: SVID refused: the node hosts no pod of the identity',
    );
    throw new WeirError(
      'ERR_AUTH_CSR_NOT_HOSTED',
      `node '${b.node}' hosts no pod of identity ${b.identity} in the desired state: it gets SVIDs for its own pods' identities only`,
      { location: { object: 'SVID request', field: 'identity' } },
    );
  }
  if (typeof b.csrPem !== 'string' || b.csrPem.length > 8192)
    throw bad('csrPem', 'csrPem is not a PEM request');
  const ttl = typeof b.ttlSeconds === 'number' && Number.isInteger(b.ttlSeconds) ? b.ttlSeconds : c.maxTtl;
  if (ttl < 1) throw bad('ttlSeconds', `ttlSeconds ${ttl} is not positive`);
  const svid = await c.store.current.signCsr(c.trustDomain, b.identity, Math.min(ttl, c.maxTtl), b.csrPem);
  return { certPem: svid.certPem, bundlePem: c.store.bundlePem() };
}

/** POST /v1/auth/node-svids: a node SVID for a node with a record, signed by the current CA. */
async function signNodeRequest(
  c: CaRoutesContext,
  b: Partial<NodeSvidRequest>,
): Promise<{ certPem: string; bundlePem: string }> {
  if (typeof b.node !== 'string' || !isNodeName(b.node))
    throw bad('node', `node '${String(b.node)}' is not a node name (a DNS label)`);
  if (!c.nodes().includes(b.node)) {
    c.log?.warn({ node: b.node }, 'auth: node SVID refused: no node record of that name');
    throw new WeirError(
      'ERR_AUTH_CSR_UNKNOWN_NODE',
      `node '${b.node}' has no node record in the cluster's state (weir/state/nodes/v1/${b.node}): node SVIDs are signed for registered nodes only`,
      { location: { object: 'node SVID request', field: 'node' } },
    );
  }
  if (typeof b.csrPem !== 'string' || b.csrPem.length > 8192)
    throw bad('csrPem', 'csrPem is not a PEM request');
  const ttl = typeof b.ttlSeconds === 'number' && Number.isInteger(b.ttlSeconds) ? b.ttlSeconds : c.maxTtl;
  if (ttl < 1) throw bad('ttlSeconds', `ttlSeconds ${ttl} is not positive`);
  const svid = await c.store.current.signNodeCsr(c.trustDomain, b.node, Math.min(ttl, c.maxTtl), b.csrPem);
  return { certPem: svid.certPem, bundlePem: c.store.bundlePem() };
}

// SPIFFE IDs of weir's workload identities (https://github.com/spiffe/spiffe/tree/main/standards,
// SPIFFE-ID.md): spiffe://<trust domain>/identity/<numeric security identity>. The trust domain is
// the URI host (lowercase letters, digits, '.', '-', '_'; at most 255 bytes; no port, no
// userinfo). Istio's namespace/service-account form (spiffe://<td>/ns/<ns>/sa/<sa>) names the
// pods of an identity; an X.509-SVID carries exactly one URI SAN, so weir's SVIDs carry the
// identity form (what the datapath's policy and weir_auth are keyed by) and the service-account
// forms are reported beside it (`weir identity cert get`), not signed.
import { WeirError } from '../shared/errors.js';

const TD = /^[a-z0-9._-]+$/;

/** Refuses a trust domain SPIFFE does not allow, naming `field`. */
export function checkTrustDomain(td: string, field = '--trust-domain'): string {
  if (!td || td.length > 255 || !TD.test(td))
    throw new WeirError(
      'ERR_AUTH_TRUST_DOMAIN',
      `trust domain '${td}' is not a SPIFFE trust domain (1..255 of a-z 0-9 . - _)`,
      { location: { field } },
    );
  return td;
}

/** spiffe://<td>/identity/<id>: the SPIFFE ID of a security identity. */
export function identitySpiffeId(td: string, identity: number): string {
  return `spiffe://${td}/identity/${identity}`;
}

/** spiffe://<td>/ns/<ns>/sa/<sa>: Istio's form, for the pods of a namespace and service account. */
export function serviceAccountSpiffeId(td: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${td}/ns/${namespace}/sa/${serviceAccount}`;
}

/** The identity a SPIFFE ID of trust domain `td` names, or undefined when it is not weir's form. */
export function identityOfSpiffeId(td: string, id: string): number | undefined {
  const prefix = `spiffe://${td}/identity/`;
  if (!id.startsWith(prefix)) return undefined;
  const rest = id.slice(prefix.length);
  if (!/^[1-9]\d{0,9}$/.test(rest)) return undefined;
  const n = Number(rest);
  return n <= 0xffffffff ? n : undefined;
}

/** Node names that can appear in a SPIFFE ID path segment and a TLS SNI label (DNS label rules). */
const NODE_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Whether `name` can be a node SVID's name (a DNS label). */
export const isNodeName = (name: string): boolean => NODE_NAME.test(name);

/**
 * spiffe://<td>/node/<name>: the SPIFFE ID of a node itself (its node proxy's own upstreams with
 * --encryption mtls; the receiving node judges them as remote-node, as over plain VXLAN).
 */
export function nodeSpiffeId(td: string, node: string): string {
  return `spiffe://${td}/node/${node}`;
}

/** The node a SPIFFE ID of trust domain `td` names, or undefined when it is not a node SVID's. */
export function nodeOfSpiffeId(td: string, id: string): string | undefined {
  const prefix = `spiffe://${td}/node/`;
  if (!id.startsWith(prefix)) return undefined;
  const rest = id.slice(prefix.length);
  return isNodeName(rest) ? rest : undefined;
}

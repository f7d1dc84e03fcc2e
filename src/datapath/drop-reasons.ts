// The drop reasons of bpf/lib/drop_reasons.h (Cilium's codes, as Hubble shows them). Kept equal
// to the header by drop-reasons.test.ts: add a code there first, never renumber.

export const REASON_FORWARDED = 0;

export const DropReason = {
  INVALID_SOURCE_IP: 132,
  POLICY: 133,
  INVALID: 134,
  CT_INVALID_HDR: 135,
  CT_MISSING_ACK: 136,
  UNKNOWN_L4: 137,
  UNKNOWN_L3: 139,
  UNSUPPORTED_L3: 143,
  CT_CREATE_FAILED: 155,
  FRAG_NOSUPPORT: 157,
  NO_SERVICE: 158,
  UNKNOWN_SENDER: 171,
  PROXY_LOOKUP_FAILED: 178,
  PROXY_SET_FAILED: 179,
  POLICY_DENY: 181,
  EP_NOT_READY: 203,
  FAIL_CLOSED: 240,
} as const;
export type DropReasonName = keyof typeof DropReason;

/** What Hubble prints for each code (the header's comments). */
export const dropReasonText: Readonly<Record<number, string>> = {
  132: 'Invalid source ip',
  133: 'Policy denied',
  134: 'Invalid packet',
  135: 'CT: Invalid header',
  136: 'CT: Missing TCP ACK flag',
  137: 'Unknown L4 protocol',
  139: 'Unknown L3 target address',
  143: 'Unsupported L3 protocol',
  155: 'CT: Map insertion failed',
  157: 'Fragmentation needed',
  158: 'Service backend not found',
  171: 'Invalid identity',
  178: 'Proxy redirection not possible',
  179: 'Proxy socket assignment failed',
  181: 'Policy denied by denylist',
  203: 'Endpoint not ready',
  240: 'Policy did not fit the endpoint policy map (fail closed)',
};

/** 'Forwarded' for 0, the text of a known drop code, or 'Unknown drop reason N'. */
export function reasonText(reason: number): string {
  if (reason === REASON_FORWARDED) return 'Forwarded';
  return dropReasonText[reason] ?? `Unknown drop reason ${reason}`;
}

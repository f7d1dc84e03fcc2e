// The drop reasons of bpf/lib/drop_reasons.h (the source of truth: Cilium's codes, as Hubble
// shows them), for user space: one row per code with the header's macro name (without DROP_),
// Hubble's DropReason enum name (flow.proto) and the text Hubble prints. drop-reasons.test.ts
// parses the header and fails unless this table equals it. Add a code there first, never renumber.
// Everything in TypeScript that names a drop reason reads it from here (the observe parser and
// formatter, the metrics, `weir bpf metrics`, the policy lookup's codes).

export const REASON_FORWARDED = 0;

export interface DropReasonRow {
  /** The macro's name without DROP_ (DROP_POLICY -> POLICY). */
  readonly name: string;
  readonly code: number;
  /** Hubble's flow.DropReason enum name, as flows carry it in drop_reason_desc. */
  readonly hubble: string;
  /** What Hubble prints ("Policy denied"). */
  readonly text: string;
}

export const DROP_REASONS = [
  { name: 'INVALID_SOURCE_IP', code: 132, hubble: 'INVALID_SOURCE_IP', text: 'Invalid source ip' },
  { name: 'POLICY', code: 133, hubble: 'POLICY_DENIED', text: 'Policy denied' },
  { name: 'INVALID', code: 134, hubble: 'INVALID_PACKET_DROPPED', text: 'Invalid packet' },
  { name: 'CT_INVALID_HDR', code: 135, hubble: 'CT_TRUNCATED_OR_INVALID_HEADER', text: 'CT: Invalid header' },
  { name: 'CT_MISSING_ACK', code: 136, hubble: 'CT_MISSING_TCP_ACK_FLAG', text: 'CT: Missing TCP ACK flag' },
  { name: 'UNKNOWN_L4', code: 137, hubble: 'CT_UNKNOWN_L4_PROTOCOL', text: 'Unknown L4 protocol' },
  { name: 'WRITE_ERROR', code: 141, hubble: 'ERROR_WRITING_TO_PACKET', text: 'Error writing to packet' },
  { name: 'UNKNOWN_L3', code: 139, hubble: 'UNKNOWN_L3_TARGET_ADDRESS', text: 'Unknown L3 target address' },
  { name: 'UNSUPPORTED_L3', code: 143, hubble: 'UNSUPPORTED_L3_PROTOCOL', text: 'Unsupported L3 protocol' },
  { name: 'MISSED_TAIL_CALL', code: 151, hubble: 'MISSED_TAIL_CALL', text: 'Missed tail call' },
  {
    name: 'CT_CREATE_FAILED',
    code: 155,
    hubble: 'CT_MAP_INSERTION_FAILED',
    text: 'CT: Map insertion failed',
  },
  {
    name: 'FRAG_NOSUPPORT',
    code: 157,
    hubble: 'IP_FRAGMENTATION_NOT_SUPPORTED',
    text: 'Fragmentation needed',
  },
  {
    name: 'NO_TUNNEL_ENDPOINT',
    code: 160,
    hubble: 'NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT',
    text: 'No tunnel/encapsulation endpoint (datapath BUG!)',
  },
  { name: 'NO_SERVICE', code: 158, hubble: 'SERVICE_BACKEND_NOT_FOUND', text: 'Service backend not found' },
  { name: 'UNKNOWN_SENDER', code: 171, hubble: 'INVALID_IDENTITY', text: 'Invalid identity' },
  {
    name: 'PROXY_LOOKUP_FAILED',
    code: 178,
    hubble: 'SOCKET_LOOKUP_FAILED',
    text: 'Proxy redirection not possible',
  },
  {
    name: 'PROXY_SET_FAILED',
    code: 179,
    hubble: 'SOCKET_ASSIGN_FAILED',
    text: 'Proxy socket assignment failed',
  },
  { name: 'POLICY_DENY', code: 181, hubble: 'POLICY_DENY', text: 'Policy denied by denylist' },
  { name: 'POLICY_AUTH_REQUIRED', code: 189, hubble: 'AUTH_REQUIRED', text: 'Authentication required' },
  { name: 'EP_NOT_READY', code: 203, hubble: 'ENDPOINT_NOT_READY', text: 'Endpoint not ready' },
  {
    name: 'FAIL_CLOSED',
    code: 240,
    hubble: 'POLICY_FAIL_CLOSED',
    text: 'Policy did not fit the endpoint policy map (fail closed)',
  },
] as const satisfies readonly DropReasonRow[];

type Row = (typeof DROP_REASONS)[number];
export type DropReasonName = Row['name'];

/** Code by name: DropReason.POLICY === 133. */
export const DropReason = Object.fromEntries(DROP_REASONS.map((r) => [r.name, r.code])) as {
  readonly [R in Row as R['name']]: R['code'];
};

const byCode = new Map<number, DropReasonRow>(DROP_REASONS.map((r) => [r.code, r]));
const byHubble = new Map<string, DropReasonRow>(DROP_REASONS.map((r) => [r.hubble, r]));

/** The row of a drop code, undefined for 0 and unknown codes. */
export const dropReason = (code: number): DropReasonRow | undefined => byCode.get(code);

/** 'Forwarded' for 0, the text of a known drop code, or 'Unknown drop reason N'. */
export function reasonText(reason: number): string {
  if (reason === REASON_FORWARDED) return 'Forwarded';
  return byCode.get(reason)?.text ?? `Unknown drop reason ${reason}`;
}

/** Hubble's enum name of a drop code ('DROP_REASON_UNKNOWN' for codes weir does not have). */
export function hubbleDropReason(reason: number): string {
  return byCode.get(reason)?.hubble ?? 'DROP_REASON_UNKNOWN';
}

/** The text of a Hubble enum name (a flow's drop_reason_desc), undefined when unknown. */
export function hubbleDropText(desc: string): string | undefined {
  return byHubble.get(desc)?.text;
}

/** The drop reason table of docs/datapath.md (between its `drop-reasons` markers). */
export function dropReasonsMarkdown(): string {
  return [
    '| code | name (drop_reasons.h) | Hubble enum | text |',
    '| --- | --- | --- | --- |',
    ...[...DROP_REASONS]
      .sort((a, b) => a.code - b.code)
      .map((r) => `| ${r.code} | \`DROP_${r.name}\` | \`${r.hubble}\` | ${r.text} |`),
  ].join('\n');
}

// The verdicts of datapath events: declared once, in precedence order (the first whose test holds
// names the event). The parser's Flow.verdict, the raw pipeline's counters and the label tables of
// weir_policy_verdict_total / hubble_flows_processed_total all come from this list, so adding a
// verdict (e.g. AUDIT from an EVENT_F_* bit) is one line here.
import { EventFlag, EventType } from '../datapath/maps/events/layout.js';
import { VERDICTS, type Verdict } from './flow.js';

export interface EventVerdict {
  verdict: Verdict;
  /** Label `action` of weir_policy_verdict_total (from flow.ts VERDICTS). */
  action: string;
  /**
   * Whether policy (or the datapath) denied the packet, dropped or only audited: the flow carries
   * the drop reason, and a policy verdict without a deciding rule matched "none".
   */
  denied: boolean;
  /** flow_event type (EVENT_*), drop reason (0: none) and flags (EVENT_F_*). */
  when(type: number, reason: number, flags: number): boolean;
}

const verdictEvent = (t: number) => t === EventType.POLICY_VERDICT;

const v = (verdict: Verdict, denied: boolean, when: EventVerdict['when']): EventVerdict => ({
  verdict,
  action: VERDICTS[verdict].action,
  denied,
  when,
});

export const EVENT_VERDICTS: readonly EventVerdict[] = [
  // Policy denies it but the endpoint audits (EVENT_F_AUDIT): it passed.
  v('AUDIT', true, (t, r, f) => verdictEvent(t) && r !== 0 && (f & EventFlag.AUDIT) !== 0),
  v('DROPPED', true, (t, r) => t === EventType.DROP || (verdictEvent(t) && r !== 0)),
  v('REDIRECTED', false, (t, _r, f) => verdictEvent(t) && (f & EventFlag.TO_PROXY) !== 0),
  v('FORWARDED', false, () => true),
];

// (type & 3) << 16 | reason << 8 | flags -> index into EVENT_VERDICTS + 1 (0: not computed yet).
const memo = new Uint8Array(4 << 16);

/** Index in EVENT_VERDICTS of an event's verdict (memoized: one table read once seen). */
export function verdictIndex(type: number, reason: number, flags: number): number {
  const key = ((type & 3) << 16) | ((reason & 0xff) << 8) | (flags & 0xff);
  const m = memo[key] as number;
  if (m !== 0) return m - 1;
  const i = EVENT_VERDICTS.findIndex((v) => v.when(type, reason, flags));
  memo[key] = i + 1;
  return i;
}

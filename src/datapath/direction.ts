// Traffic direction as the pod sees it (DIR_* in bpf/lib/common.h; also CT_F_* and metrics).
import { WeirError } from '../shared/errors.js';

export type Direction = 'ingress' | 'egress';

export const DIR: Readonly<Record<Direction, number>> = { ingress: 1, egress: 2 };

export function directionOf(n: number): Direction {
  if (n === 1) return 'ingress';
  if (n === 2) return 'egress';
  throw new WeirError('ERR_DATAPATH_DIRECTION', `unknown direction ${n} in a datapath map`);
}

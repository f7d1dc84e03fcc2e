// One error type for all of weir. Every error carries a stable code (ERR_<AREA>_<WHAT>, declared with
// its meaning in error-codes.ts) that callers and tests branch on; the message is for people. Input
// errors also name where the bad input was: the file, the object (kind namespace/name) and the field.
import { isErrorCode, type ErrorCode } from './error-codes.js';

export type { ErrorCode } from './error-codes.js';

export interface ErrorLocation {
  file?: string;
  object?: string;
  field?: string;
}

export class WeirError extends Error {
  readonly code: ErrorCode;
  readonly location: ErrorLocation;
  readonly details: Record<string, unknown>;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { location?: ErrorLocation; cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'WeirError';
    this.code = code;
    this.location = opts.location ?? {};
    this.details = opts.details ?? {};
  }

  /** "file: object: field: message", leaving out the parts that are unknown. */
  override toString(): string {
    const where = [this.location.file, this.location.object, this.location.field].filter(Boolean).join(': ');
    return where ? `${where}: ${this.message}` : this.message;
  }
}

export function isCode(err: unknown, code: ErrorCode): err is WeirError {
  return err instanceof WeirError && err.code === code;
}

/** A list of input errors found together; nothing was applied. */
export class ValidationError extends WeirError {
  readonly problems: WeirError[];
  constructor(problems: WeirError[]) {
    super(problems[0]?.code ?? 'ERR_INPUT_INVALID', problems.map((p) => p.toString()).join('\n'), {
      location: problems[0]?.location ?? {},
    });
    this.name = 'ValidationError';
    this.problems = problems;
  }

  /** The message already names each problem's location. */
  override toString(): string {
    return this.message;
  }
}

/** An error as the agent API sends it: `{"error": {code, message, location?, problems?}}`. */
export interface WireError {
  code: string;
  message: string;
  location?: ErrorLocation;
  problems?: WireError[];
}

/**
 * A WireError back as a WeirError with the same code and location (a ValidationError when it lists
 * problems). A code this build does not declare (an agent of another version) becomes
 * ERR_AGENT_BAD_ANSWER, with the code kept in the message.
 */
export function errorFromWire(e: WireError): WeirError {
  if (e.problems && e.problems.length > 0) return new ValidationError(e.problems.map(errorFromWire));
  if (isErrorCode(e.code)) return new WeirError(e.code, e.message, { location: e.location ?? {} });
  return new WeirError('ERR_AGENT_BAD_ANSWER', `${String(e.code)}: ${e.message}`, {
    location: e.location ?? {},
  });
}

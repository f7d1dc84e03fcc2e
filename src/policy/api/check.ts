// A small checker for hand-written validation: it walks a manifest, records every problem with
// its field path, and lets the caller throw them all at once as one ValidationError.
import { ValidationError, WeirError, type ErrorCode } from '../../shared/errors.js';

export interface PolicyLocation {
  file: string;
  object: string;
}

export type Path = readonly (string | number)[];

export function pathString(path: Path): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${p}` : p;
  return out;
}

export class Checker {
  readonly problems: WeirError[] = [];
  constructor(readonly loc: PolicyLocation) {}

  fail(code: ErrorCode, path: Path, message: string): void {
    this.problems.push(
      new WeirError(code, message, {
        location: { file: this.loc.file, object: this.loc.object, field: pathString(path) },
      }),
    );
  }

  /** Throws a ValidationError naming every problem found, if any. */
  done(): void {
    if (this.problems.length > 0) throw new ValidationError(this.problems);
  }

  /**
   * Checks `value` is a plain object whose keys are all known. `unsupported` lists real fields
   * of the upstream API that weir does not implement yet: they are rejected by name, never ignored.
   * `ignored` lists fields that carry no policy meaning (status, bookkeeping metadata).
   */
  object(
    value: unknown,
    path: Path,
    known: readonly string[],
    opts: { unsupported?: readonly string[]; ignored?: readonly string[]; what?: string } = {},
  ): Record<string, unknown> | undefined {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      this.fail('ERR_POLICY_FIELD_INVALID', path, `must be an object`);
      return undefined;
    }
    const obj = value as Record<string, unknown>;
    for (const k of Object.keys(obj)) {
      if (known.includes(k) || opts.ignored?.includes(k)) continue;
      if (opts.unsupported?.includes(k))
        this.fail('ERR_POLICY_FIELD_UNSUPPORTED', [...path, k], `'${k}' is not supported by weir yet`);
      else
        this.fail(
          'ERR_POLICY_FIELD_UNKNOWN',
          [...path, k],
          `unknown field '${k}'${opts.what ? ` in ${opts.what}` : ''} (known: ${known.join(', ')})`,
        );
    }
    return obj;
  }

  array(value: unknown, path: Path): unknown[] | undefined {
    if (value === undefined || value === null) return undefined;
    if (!Array.isArray(value)) {
      this.fail('ERR_POLICY_FIELD_INVALID', path, 'must be a list');
      return undefined;
    }
    return value;
  }

  string(value: unknown, path: Path, opts: { required?: boolean } = {}): string | undefined {
    if (value === undefined || value === null) {
      if (opts.required) this.fail('ERR_POLICY_FIELD_MISSING', path, 'required field is missing');
      return undefined;
    }
    if (typeof value !== 'string') {
      this.fail('ERR_POLICY_FIELD_INVALID', path, 'must be a string');
      return undefined;
    }
    return value;
  }

  boolean(value: unknown, path: Path): boolean | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'boolean') {
      this.fail('ERR_POLICY_FIELD_INVALID', path, 'must be true or false');
      return undefined;
    }
    return value;
  }
}

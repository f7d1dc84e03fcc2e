// The Store's errors: stable codes callers branch on.
import { WeirError } from '../shared/errors.js';

/** A condition of a write did not hold (the key exists, or changed since it was read). */
export const ERR_STORE_CONFLICT = 'ERR_STORE_CONFLICT' as const;
/** A watch asked for revisions the store no longer keeps. */
export const ERR_STORE_COMPACTED = 'ERR_STORE_COMPACTED' as const;
/** Another process holds the file store. */
export const ERR_STORE_LOCKED = 'ERR_STORE_LOCKED' as const;
/** The store file cannot be read as a store. */
export const ERR_STORE_CORRUPT = 'ERR_STORE_CORRUPT' as const;
/** A write could not be made durable; the store refuses every later operation (fail closed). */
export const ERR_STORE_IO = 'ERR_STORE_IO' as const;
/** The store (etcd) cannot be reached. */
export const ERR_STORE_UNREACHABLE = 'ERR_STORE_UNREACHABLE' as const;
/** Used after close(). */
export const ERR_STORE_CLOSED = 'ERR_STORE_CLOSED' as const;
/** A value that is not a JSON object, or a bad key. */
export const ERR_STORE_VALUE = 'ERR_STORE_VALUE' as const;
/** The lease does not exist (expired or revoked). */
export const ERR_STORE_LEASE = 'ERR_STORE_LEASE' as const;

export function conflict(key: string, ifRevision: number, actual: number): WeirError {
  return new WeirError(
    ERR_STORE_CONFLICT,
    ifRevision === 0
      ? `${key} already exists`
      : `${key} is at revision ${actual || '(absent)'}, not ${ifRevision}`,
    { details: { key, ifRevision, actual } },
  );
}

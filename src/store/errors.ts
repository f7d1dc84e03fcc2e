// The Store's errors: stable codes callers branch on.
import { WeirError } from '../shared/errors.js';

/** A condition of a write did not hold (the key exists, or changed since it was read). */
export const ERR_STORE_CONFLICT = 'ERR_STORE_CONFLICT';
/** A watch asked for revisions the store no longer keeps. */
export const ERR_STORE_COMPACTED = 'ERR_STORE_COMPACTED';
/** Another process holds the file store. */
export const ERR_STORE_LOCKED = 'ERR_STORE_LOCKED';
/** The store file cannot be read as a store. */
export const ERR_STORE_CORRUPT = 'ERR_STORE_CORRUPT';
/** A write could not be made durable; the store refuses every later operation (fail closed). */
export const ERR_STORE_IO = 'ERR_STORE_IO';
/** The store (etcd) cannot be reached. */
export const ERR_STORE_UNREACHABLE = 'ERR_STORE_UNREACHABLE';
/** Used after close(). */
export const ERR_STORE_CLOSED = 'ERR_STORE_CLOSED';
/** A value that is not a JSON object, or a bad key. */
export const ERR_STORE_VALUE = 'ERR_STORE_VALUE';
/** The lease does not exist (expired or revoked). */
export const ERR_STORE_LEASE = 'ERR_STORE_LEASE';

export function conflict(key: string, ifRevision: number, actual: number): WeirError {
  return new WeirError(
    ERR_STORE_CONFLICT,
    ifRevision === 0
      ? `${key} already exists`
      : `${key} is at revision ${actual || '(absent)'}, not ${ifRevision}`,
    { details: { key, ifRevision, actual } },
  );
}

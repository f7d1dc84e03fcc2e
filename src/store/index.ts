// The Store (src/store): weir's key-value state with revisions, conditional writes, watches and
// leases, behind one interface with two backends — a file for one node, etcd for a cluster.
export type {
  JsonObject,
  KeyValue,
  Lease,
  LeaseOptions,
  Store,
  StoreOp,
  TxnResult,
  Watch,
  WatchBatch,
  WatchEvent,
  WatchOptions,
} from './types.js';
export { isJsonObject } from './types.js';
export * from './errors.js';
export { FileStore, type FileStoreOptions } from './file.js';
// The etcd backend (./etcd.js, and ./etcd-server.js to run etcd) is imported from its own module:
// its gRPC client takes a second to load, which no CLI command should pay for.

// weir's kernel interface: BPF objects, maps, programs and their attach points, in TypeScript
// over the system's libbpf (koffi). Modelled on cilium/ebpf.
//
// Ownership (who closes what):
// - BpfObject owns every map and program it loaded. object.map()/object.program() return
//   borrowed handles: valid until object.close(), after which they throw ERR_BPF_STATE.
//   Closing them is allowed and does nothing to the object.
// - BpfMap.create/fromPin/fromId and BpfProgram.fromPin/fromId return handles that own their
//   fd: call close() when done (a leaked fd keeps the kernel object alive until exit).
// - TypedMap does not own its BpfMap; RingBufferConsumer/Reader do not own their map, but must
//   be close()d themselves (they hold the ring's mapping and an event loop handle).
// What outlives close():
// - Pins: a map or program pinned under /sys/fs/bpf (weir uses /sys/fs/bpf/weir/...) lives until
//   the pin is removed (unpin(), or rm). reuseOrPinMap() pins on load and never unpins.
// - Attachments: tc filters (attachTc) and cgroup attachments (attachCgroup) hold the program
//   in the kernel until detachTc/detachCgroup, or until the device/netns/cgroup goes away.
//
// Errors are BpfError (a WeirError) with stable codes: ERR_BPF_KEY_NOT_EXIST, ERR_BPF_KEY_EXIST,
// ERR_BPF_VERIFIER (VerifierError, with .log), ERR_BPF_SYSCALL, ERR_BPF_CODEC, ERR_BPF_NOT_FOUND,
// ERR_BPF_STATE, ERR_BPF_LAYOUT, ERR_BPF_MAP_INCOMPATIBLE; `errno`/`errnoName` carry the kernel's answer.
//
// Network namespaces: tc and if_nametoindex act in the calling thread's netns; wrap them in
// withNetns(name, () => ...) (synchronous only).
export * from './codec.js';
export * from './errors.js';
export { checkLayout } from './btf.js';
export { BpfMap, TypedMap, MapType, perCpu, numPossibleCpus } from './map.js';
export type { MapCreateOptions, MapTypeName, UpdateFlag } from './map.js';
export { BpfObject, ERR_BPF_MAP_INCOMPATIBLE } from './object.js';
export type { ConfigValue, OpenOptions } from './object.js';
export { BpfProgram, ProgType, skbContext, SKB_CONTEXT_OFFSETS, SKB_CONTEXT_SIZE } from './program.js';
export type { SkbContext, TestRunOptions, TestRunResult } from './program.js';
export { RingBufferConsumer, RingBufferReader } from './ringbuf.js';
export type { RecordView } from './ringbuf.js';
export { attachTc, detachTc, queryTc, destroyClsact } from './tc.js';
export type { TcDirection, TcTarget } from './tc.js';
export { attachCgroup, detachCgroup, onCgroup, queryCgroup, CgroupAttachType } from './cgroup.js';
export type { CgroupAttachTypeName, CgroupTarget } from './cgroup.js';
export { withNetns, ifindexIn, macHere, macIn, netnsDir } from './netns.js';

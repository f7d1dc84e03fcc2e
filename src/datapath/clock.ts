// The clock conntrack lifetimes are in: bpf_ktime_get_coarse_ns() (the datapath's conntrack, at
// tick granularity) and bpf_ktime_get_ns() (event timestamps) are CLOCK_MONOTONIC, as is Node's
// hrtime on Linux, so user space can compare against lifetime_ns directly.

export function monotonicNowNs(): bigint {
  return process.hrtime.bigint();
}

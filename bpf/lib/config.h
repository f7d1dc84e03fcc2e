/* SPDX-License-Identifier: Apache-2.0 */
/* Load-time configuration of the datapath.
 *
 * `volatile const` globals live in .rodata: the loader (src/datapath/loader.ts, Datapath.open's
 * `config`) writes them before the object is loaded, so no recompilation is needed; the verifier
 * then sees them as constants. Defaults are Cilium's (cilium-agent --bpf-ct-timeout-*).
 *
 *   weir_ct_timeout_syn    seconds a TCP connection lives until the responder has answered
 *   weir_ct_timeout_tcp    seconds an established TCP connection lives after its last packet
 *   weir_ct_timeout_close  seconds a TCP connection lives after FIN both ways or an RST
 *   weir_ct_timeout_any    seconds a non-TCP flow (UDP, ICMP, SCTP, ...) lives after its last packet
 *   weir_events_enabled    1: write flow events (lib/events.h); 0: observability off, no events
 *   weir_events_wakeup_ns  at most one reader wake-up per CPU per this many ns (lib/events.h)
 */
#ifndef WEIR_CONFIG_H
#define WEIR_CONFIG_H

#include <linux/types.h>

volatile const __u32 weir_ct_timeout_syn = 60;
volatile const __u32 weir_ct_timeout_tcp = 21600;
volatile const __u32 weir_ct_timeout_close = 10;
volatile const __u32 weir_ct_timeout_any = 60;
volatile const __u32 weir_events_enabled = 1;
volatile const __u64 weir_events_wakeup_ns = 5000000; /* 5 ms: half the reader's flush window */

#define NSEC_PER_SEC 1000000000ULL

#endif /* WEIR_CONFIG_H */

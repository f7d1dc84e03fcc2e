/* SPDX-License-Identifier: Apache-2.0 */
/* Drop reasons: the one table (Cilium's codes, as Hubble shows them). Each code's comment gives
 * Hubble's DropReason enum name (flow.proto), then in quotes the text Hubble prints, then notes.
 * src/datapath/drop-reasons.ts carries the same table for user space (the observe parser, the
 * metrics, `weir bpf metrics`); drop-reasons.test.ts fails unless it equals this file, name,
 * code, enum name and text. Never renumber; retire a code as UNUSED_n. */
#ifndef WEIR_DROP_REASONS_H
#define WEIR_DROP_REASONS_H

#define REASON_FORWARDED 0
#define DROP_INVALID_SOURCE_IP 132 /* INVALID_SOURCE_IP "Invalid source ip" */
#define DROP_POLICY 133            /* POLICY_DENIED "Policy denied": no allow entry */
#define DROP_INVALID 134           /* INVALID_PACKET_DROPPED "Invalid packet" */
#define DROP_CT_INVALID_HDR 135    /* CT_TRUNCATED_OR_INVALID_HEADER "CT: Invalid header" */
#define DROP_CT_MISSING_ACK 136    /* CT_MISSING_TCP_ACK_FLAG "CT: Missing TCP ACK flag" */
#define DROP_UNKNOWN_L4 137        /* CT_UNKNOWN_L4_PROTOCOL "Unknown L4 protocol" */
#define DROP_WRITE_ERROR 141       /* ERROR_WRITING_TO_PACKET "Error writing to packet": e.g. the tunnel key (lib/overlay.h) */
#define DROP_UNKNOWN_L3 139        /* UNKNOWN_L3_TARGET_ADDRESS "Unknown L3 target address" */
#define DROP_UNSUPPORTED_L3 143    /* UNSUPPORTED_L3_PROTOCOL "Unsupported L3 protocol" */
#define DROP_MISSED_TAIL_CALL 151  /* MISSED_TAIL_CALL "Missed tail call": a stage of weir_calls not loaded, or its state not this packet's (lib/stages.h): fail closed */
#define DROP_CT_CREATE_FAILED 155  /* CT_MAP_INSERTION_FAILED "CT: Map insertion failed" */
#define DROP_FRAG_NOSUPPORT 157    /* IP_FRAGMENTATION_NOT_SUPPORTED "Fragmentation needed": untracked fragment */
#define DROP_NO_TUNNEL_ENDPOINT 160 /* NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT "No tunnel/encapsulation endpoint (datapath BUG!)": a tunnel packet without key, or one for the tunnel with no endpoint (lib/overlay.h) */
#define DROP_NO_SERVICE 158        /* SERVICE_BACKEND_NOT_FOUND "Service backend not found" */
#define DROP_UNKNOWN_SENDER 171    /* INVALID_IDENTITY "Invalid identity": also a tunnel's VNI 0 or an identity above 2^24 - 1 */
#define DROP_PROXY_LOOKUP_FAILED 178 /* SOCKET_LOOKUP_FAILED "Proxy redirection not possible": no proxy socket, fail closed */
#define DROP_PROXY_SET_FAILED 179  /* SOCKET_ASSIGN_FAILED "Proxy socket assignment failed" */
#define DROP_POLICY_DENY 181       /* POLICY_DENY "Policy denied by denylist" */
#define DROP_POLICY_AUTH_REQUIRED 189 /* AUTH_REQUIRED "Authentication required": no valid weir_auth entry */
#define DROP_FAIL_CLOSED 240       /* POLICY_FAIL_CLOSED "Policy did not fit the endpoint policy map (fail closed)": weir-only */
#define DROP_EP_NOT_READY 203      /* ENDPOINT_NOT_READY "Endpoint not ready" */

#endif /* WEIR_DROP_REASONS_H */

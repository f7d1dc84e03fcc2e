/* SPDX-License-Identifier: Apache-2.0 */
/* Drop reasons: the one table (Cilium's codes, as Hubble shows them). The TypeScript table
 * src/datapath/drop-reasons.ts is generated from this file: never renumber; retire as UNUSED_n. */
#ifndef WEIR_DROP_REASONS_H
#define WEIR_DROP_REASONS_H

#define REASON_FORWARDED 0
#define DROP_INVALID_SOURCE_IP 132 /* "Invalid source ip" */
#define DROP_POLICY 133            /* "Policy denied": no allow entry */
#define DROP_INVALID 134           /* "Invalid packet" */
#define DROP_CT_INVALID_HDR 135    /* "CT: Invalid header" */
#define DROP_CT_MISSING_ACK 136    /* "CT: Missing TCP ACK flag" */
#define DROP_UNKNOWN_L4 137        /* "Unknown L4 protocol" */
#define DROP_UNKNOWN_L3 139        /* "Unknown L3 target address" */
#define DROP_UNSUPPORTED_L3 143    /* "Unsupported L3 protocol" */
#define DROP_CT_CREATE_FAILED 155  /* "CT: Map insertion failed" */
#define DROP_FRAG_NOSUPPORT 157    /* "Fragmentation needed" / untracked fragment */
#define DROP_NO_SERVICE 158        /* "Service backend not found" */
#define DROP_UNKNOWN_SENDER 171    /* "Invalid identity" */
#define DROP_PROXY_LOOKUP_FAILED 178 /* "Proxy redirection not possible": no proxy socket (fail closed) */
#define DROP_PROXY_SET_FAILED 179  /* "Proxy socket assignment failed" */
#define DROP_POLICY_DENY 181       /* "Policy denied by denylist" */
#define DROP_FAIL_CLOSED 240       /* weir-only: endpoint policy did not fit its map (fail closed) */
#define DROP_EP_NOT_READY 203      /* "Endpoint not ready" */

#endif /* WEIR_DROP_REASONS_H */

/* SPDX-License-Identifier: Apache-2.0 */
/* weir datapath: the layouts shared by the BPF programs and user space.
 *
 * Every struct here has a TypeScript mirror (src/datapath/maps/<map>/layout.ts) whose size and
 * offsets are checked against this object's BTF by a test. Change both or neither.
 *
 * The maps themselves (names, kinds, which are pinned, which object owns them) are declared once,
 * in src/datapath/maps/catalog.ts (rendered in docs/datapath.md); a test checks that catalogue
 * against the .maps section of every object.
 */
#ifndef WEIR_COMMON_H
#define WEIR_COMMON_H

#include <linux/types.h>

/* Reserved security identities (Cilium's numbering, pkg/identity/numericidentity.go). */
#define IDENTITY_UNKNOWN 0
#define IDENTITY_HOST 1
#define IDENTITY_WORLD 2
#define IDENTITY_UNMANAGED 3
#define IDENTITY_HEALTH 4
#define IDENTITY_INIT 5
#define IDENTITY_REMOTE_NODE 6
#define IDENTITY_KUBE_APISERVER 7
#define IDENTITY_INGRESS 8
#define IDENTITY_WORLD_IPV4 9
#define IDENTITY_WORLD_IPV6 10
#define IDENTITY_CLUSTER_MIN 256       /* cluster identities: 256 .. 65535 */
#define IDENTITY_LOCAL_FLAG (1U << 24) /* CIDR identities: (1<<24) | n, node-local */

/* Traffic direction, as seen from the endpoint (pod). */
#define DIR_INGRESS 1 /* to the pod: tc egress on the host-side veth */
#define DIR_EGRESS 2  /* from the pod: tc ingress on the host-side veth */

/* ---- ipcache: LPM trie, longest prefix wins. prefixlen counts from `pad` (32 bits of
 * pad+family) followed by the address bits: a /24 IPv4 prefix has prefixlen 32 + 24. */
struct ipcache_key {
	__u32 prefixlen;
	__u16 pad1;
	__u8 pad2;
	__u8 family; /* 4 or 6 */
	__u8 addr[16]; /* IPv4 in the first 4 bytes, network order */
};
#define IPCACHE_STATIC_PREFIX 32

struct ipcache_value {
	__u32 identity;
	__be32 tunnel_endpoint; /* the IPv4 underlay address of the node a remote pod lives on, in both
				 * routing modes (lib/auth.h's node id); tunnel mode also encapsulates
				 * towards it (lib/overlay.h, only with a device in weir_tunnel);
				 * 0 = this node, or no node */
};

/* ---- endpoints: one entry per pod, keyed by the ifindex of its host-side veth. */
struct endpoint_info {
	__u32 endpoint_id; /* key of the endpoint's policy map in weir_policy */
	__u32 identity;    /* the pod's security identity */
	__u32 flags;       /* ENDPOINT_F_* */
	__u32 pad;
};
#define ENDPOINT_F_ENFORCE_INGRESS (1U << 0) /* informative: entries decide, see policy.h */
#define ENDPOINT_F_ENFORCE_EGRESS (1U << 1)
#define ENDPOINT_F_FAIL_CLOSED (1U << 2) /* policy did not fit: drop everything new */
#define ENDPOINT_F_AUDIT (1U << 3)       /* policy audit mode: a policy denial (DROP_POLICY, DROP_POLICY_DENY)
					  * is reported (EVENT_F_AUDIT) and the connection passes */

/* ---- local endpoints by address (weir_lxc, lib/host_routing.h): where eBPF host routing delivers
 * a packet for a pod of this node. One entry per pod address (IPv4 and IPv6). */
struct lxc_key {
	__u8 addr[16]; /* IPv4 in the first 4 bytes, network order */
	__u8 family;   /* 4 or 6 */
	__u8 pad[3];
};
struct lxc_info {
	__u32 ifindex;     /* the pod's host-side veth (its weir_endpoints key) */
	__u8 mac[6];       /* the pod's own interface (eth0): the frame's destination */
	__u8 host_mac[6];  /* the host-side veth: the frame's source, as the node's routing writes it */
};

/* ---- policy: per endpoint LPM trie (Cilium's policy_key shape).
 * prefixlen covers identity (32) + direction (8) + protocol (8) + port bits (0..16):
 *   identity ANY is the key 0 and is looked up separately (two lookups per new flow);
 *   protocol ANY: prefixlen 40 (identity + direction only);
 *   port ANY:     prefixlen 48; exact port: 64; a port range is split into aligned prefixes. */
struct policy_key {
	__u32 prefixlen;
	__u32 identity;
	__u8 direction; /* DIR_INGRESS / DIR_EGRESS */
	__u8 protocol;  /* IPPROTO_*, 0 = any */
	__be16 dport;   /* network order */
};
#define POLICY_STATIC_PREFIX 40 /* identity + direction */
#define POLICY_FULL_PREFIX 64

struct policy_entry {
	__be16 proxy_port; /* 0: forward; else redirect to the L7 proxy on this port */
	__u8 flags;        /* POLICY_F_* */
	__u8 l4_prefix;    /* port bits matched (0..16) + 8 if protocol is exact: precedence */
	__u32 cookie;      /* rule that produced this entry (agent maps it to namespace/name/rule) */
};
#define POLICY_F_DENY (1U << 0)
#define POLICY_F_AUTH (1U << 1) /* allow only once the two identities authenticated (lib/auth.h) */

/* ---- mutual authentication (weir_auth, lib/auth.h; Cilium's cilium_auth_map): a pair of
 * identities the agent has authenticated by an mTLS handshake with their SVIDs, per remote node. */
struct auth_key {
	__u32 src_identity;   /* the connection's initiator */
	__u32 dst_identity;
	__u16 remote_node_id; /* the peer's node; 0: this node */
	__u8 auth_type;       /* AUTH_TYPE_* */
	__u8 pad;
};
#define AUTH_TYPE_MTLS 1 /* an mTLS handshake with X.509 SVIDs (Hubble: SPIRE) */
struct auth_info {
	__u64 expires_ns; /* CLOCK_MONOTONIC: the earlier notAfter of the two certificates */
};

/* ---- conntrack. One map for both families and both directions; the tuple is stored as the
 * first packet of the connection saw it (saddr = initiator), `flags` tells the direction. */
struct ct_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 nexthdr;
	__u8 flags; /* CT_F_* */
	__u8 family;
	__u8 pad;
};
#define CT_F_INGRESS 1
#define CT_F_EGRESS 2
#define CT_F_PROXY 4 /* with CT_F_INGRESS: opened by the node proxy (its transparent upstream) */

struct ct_entry {
	__u64 packets_fwd;
	__u64 bytes_fwd;
	__u64 packets_rev;
	__u64 bytes_rev;
	__u64 lifetime_ns; /* expires when CLOCK_MONOTONIC (bpf_ktime_get_coarse_ns()) passes this */
	__u32 cookie;      /* policy rule that allowed the connection */
	__u32 src_identity;
	__u16 tcp_flags_fwd; /* TCP flags seen from the initiator */
	__u16 tcp_flags_rev; /* TCP flags seen from the responder */
	__u8 state;          /* CT_STATE_* */
	__u8 flags;          /* CT_ENTRY_F_* */
	__u16 rev_nat_index; /* translated at tc (lib/lb_nat.h): replies show weir_lb_revnat[i] */
	__be16 proxy_port;   /* CT_ENTRY_F_TO_PROXY: the proxy listener (network order) */
	__u16 pad1;
	__u32 pad2;
};
#define CT_STATE_NEW 1         /* only the initiator has sent packets so far */
#define CT_STATE_ESTABLISHED 2 /* the responder answered */
#define CT_STATE_CLOSING 3     /* TCP: FIN seen both ways, or an RST */
#define CT_ENTRY_F_TO_PROXY 1       /* its packets go to the node proxy (lib/proxy.h) */
#define CT_ENTRY_F_PROXY_UPSTREAM 2 /* opened by the node proxy (key has CT_F_PROXY) */

/* ---- fragments: the first fragment records its ports, later ones look them up. */
struct frag_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 id;
	__u8 proto;
	__u8 family;
	__u16 pad;
};
struct frag_ports {
	__be16 sport;
	__be16 dport;
};

/* ---- metrics: per-CPU counters of forwards (reason 0) and drops (reason = drop code), one array
 * slot per {reason, direction}: reason << 2 | direction (lib/metrics.h). */
struct metrics_value {
	__u64 packets;
	__u64 bytes;
};

/* ---- events: records of the weir_events ring buffer (BPF_MAP_TYPE_RINGBUF), read by the agent's
 * flow pipeline (src/observe/). One layout for every kind; `type` tells which fields matter.
 *   EVENT_DROP            every dropped packet: reason (drop code), cookie of the denying rule
 *                         for policy drops (DROP_POLICY_DENY), 0 otherwise
 *   EVENT_POLICY_VERDICT  the first packet of every NEW connection: allowed (reason 0) or denied
 *                         (reason = drop code), cookie of the deciding rule (0: none/default)
 *   EVENT_TRACE           per connection, not per packet: subtype TRACE_OPEN when the conntrack
 *                         entry is created, TRACE_CLOSE when TCP closes (FIN both ways or RST), with
 *                         the entry's packet and byte counts. Entries that expire (UDP, ...) are
 *                         closed by the agent's conntrack GC, from the same counters.
 * A reservation that fails (ring full) is counted in weir_events_lost, never silently lost. */
struct flow_event {
	__u8 type;      /* EVENT_* */
	__u8 subtype;   /* TRACE_OPEN / TRACE_CLOSE for EVENT_TRACE, else 0 */
	__u8 direction; /* DIR_INGRESS / DIR_EGRESS (of the endpoint) */
	__u8 reason;    /* drop code, 0 = forwarded/allowed */
	__u8 family;    /* 4 or 6 */
	__u8 nexthdr;   /* IPPROTO_* */
	__u8 flags;     /* EVENT_F_* */
	__u8 tcp_flags; /* TCP flags of the packet (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10) */
	__u32 ifindex;  /* host-side veth of the endpoint */
	__u32 endpoint_id;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 cookie;   /* policy rule (see above) */
	__u32 len;      /* bytes of this packet (L2) */
	__u8 saddr[16]; /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
	__be16 sport;   /* ICMP: type/code and id are not split out; 0 */
	__be16 dport;
	__be16 proxy_port; /* EVENT_F_TO_PROXY: the proxy listener it was redirected to */
	__u16 remote_node_id; /* a drop for want of authentication (189): the peer's node (lib/auth.h,
			       * auth_remote_node); 0: this node */
	__u64 ktime_ns; /* bpf_ktime_get_ns() */
	__u64 packets_fwd; /* EVENT_TRACE: conntrack counters of the connection */
	__u64 bytes_fwd;
	__u64 packets_rev;
	__u64 bytes_rev;
};
#define EVENT_DROP 1
#define EVENT_POLICY_VERDICT 2
#define EVENT_TRACE 3
#define TRACE_OPEN 1
#define TRACE_CLOSE 2
#define EVENT_F_REPLY (1U << 0)      /* the packet travels responder -> initiator */
#define EVENT_F_RELATED (1U << 1)    /* an ICMP error of a tracked connection */
#define EVENT_F_TO_PROXY (1U << 2)   /* redirected to the node proxy (Hubble: REDIRECTED) */
#define EVENT_F_FROM_PROXY (1U << 3) /* sent by the node proxy (its upstream connection) */
#define EVENT_F_ENCRYPTED (1U << 5)  /* the connection travels in the node proxies' mTLS tunnel (--encryption
				      * mtls): the sender's verdict, and the receiver's (its upstream) */
#define EVENT_F_AUDIT (1U << 4)      /* EVENT_POLICY_VERDICT: policy denied it (reason), the endpoint
				      * audits: it passed (Hubble: AUDIT) */

/* ---- skb->mark between the datapath, the node's routing and the node proxy (lib/proxy.h; the
 * node proxy and the agent's policy routing use the same values, src/datapath/proxy-marks.ts).
 * Cilium's layout: a magic in bits 8-11, a port in the upper 16 bits. */
#define MARK_MAGIC_MASK 0x0F00
#define MARK_MAGIC_TO_PROXY 0x0200      /* deliver locally to a proxy socket; port (host order) << 16 */
#define MARK_MAGIC_PROXY_INGRESS 0x0A00 /* SO_MARK of the proxy's upstream sockets, ingress listener */
#define MARK_MAGIC_PROXY_EGRESS 0x0B00  /* ... egress listener; the client's identity as MARK_MAGIC_IDENTITY's */
#define PROXY_ROUTE_TABLE 2004          /* fwmark MARK_MAGIC_TO_PROXY/MARK_MAGIC_MASK -> local delivery */
#define MARK_MAGIC_PROXY_TUNNEL 0x0C00  /* ... the mTLS tunnel's (HBONE) inbound side: the identity the peer's
					 * certificate proves, laid out as MARK_MAGIC_IDENTITY's (lib/overlay.h) */
#define MARK_MAGIC_IDENTITY 0x0F00      /* a tunnel's source identity, for weir_to_container (lib/overlay.h):
					 * identity bits 0-15 in the mark's bits 16-31, bits 16-23 in 0-7 */

/* ---- tunnel mode (lib/overlay.h): weir_tunnel[0], written by the loader (attachOverlay). */
struct tunnel_config {
	__u32 ifindex;      /* the node's VXLAN device (external / collect_md); 0 = no tunnel */
	__u16 flags;        /* reserved */
	__u16 encrypt_port; /* --encryption mtls: the node proxy's outbound tunnel listener (host order);
			     * pods' TCP to other nodes' pods goes there instead of the VXLAN device.
			     * 0 = off */
};

/* ---- service load balancing (Cilium's lb maps: bpf/lib/lb.h). One set for IPv4 and IPv6.
 *   weir_lb_services  HASH  lb_key -> lb_service. Slot 0 of a frontend holds its metadata (count of
 *                     backend slots, rev_nat_index, flags, affinity timeout); slots 1..count
 *                     name one backend id each (active backends first, see lb_service.active).
 *   weir_lb_backends  HASH  u32 backend id -> lb_backend
 *   weir_lb_revnat    HASH  u16 rev_nat_index -> lb_revnat (the frontend, to show as the peer)
 *   weir_lb_maglev    HASH_OF_MAPS u16 rev_nat_index -> ARRAY[1] of u32[LB_MAGLEV_LUT_MAX] ids
 *   weir_lb_affinity  LRU_HASH lb_affinity_key -> lb_affinity_value (sessionAffinity ClientIP)
 *   weir_lb_sk_rev    SK_STORAGE socket -> lb_sk_rev (the backends the connect/sendmsg hook sent
 *                     it to and their frontends, for its getpeername/recvmsg; a socket never
 *                     translated has none, so an accepted connection's getpeername costs no lookup)
 */
struct lb_key {
	__u8 addr[16];      /* frontend address (ClusterIP, or the node IP for NodePort) */
	__be16 dport;       /* frontend port */
	__u16 backend_slot; /* 0: the frontend's metadata; 1..count: backends */
	__u8 proto;         /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 family;        /* 4 or 6 */
	__u8 scope;         /* LB_SCOPE_EXT (0) / LB_SCOPE_INT (1): traffic policy Local */
	__u8 pad;
};
#define LB_SCOPE_EXT 0
#define LB_SCOPE_INT 1

struct lb_service {
	__u32 backend_id;      /* slot >= 1: the backend; slot 0: affinity timeout in seconds */
	__u16 count;           /* slot 0: backend slots (active and terminating) */
	__u16 rev_nat_index;   /* slot 0: the frontend's id (weir_lb_revnat, weir_lb_maglev, affinity) */
	__u16 active;          /* slot 0: slots 1..active are ACTIVE backends (the rest terminate) */
	__u8 flags;            /* SVC_F_* */
	__u8 pad;
};
#define SVC_F_AFFINITY (1U << 0)  /* sessionAffinity: ClientIP */
#define SVC_F_MAGLEV (1U << 1)    /* pick through weir_lb_maglev, not at random */
#define SVC_F_NODEPORT (1U << 2)  /* the frontend is a NodePort */
#define SVC_F_LOCAL (1U << 3)     /* traffic policy Local for this scope */

struct lb_backend {
	__u8 addr[16];
	__be16 port;
	__u8 proto;
	__u8 family;
	__u8 state; /* LB_BACKEND_* */
	__u8 pad[3];
};
#define LB_BACKEND_ACTIVE 0
#define LB_BACKEND_TERMINATING 1
#define LB_BACKEND_QUARANTINED 2
#define LB_BACKEND_MAINTENANCE 3

struct lb_revnat {
	__u8 addr[16];
	__be16 port;
	__u8 family;
	__u8 pad;
	__u16 rev_nat_index;
	__u16 pad2;
};

struct lb_affinity_key {
	__u64 client_cookie; /* socket LB: the client's netns cookie */
	__u8 client_addr[16]; /* tc LB: the client's address (zero at the socket) */
	__u16 rev_nat_index;
	__u8 family;
	__u8 pad[5];
};
struct lb_affinity_value {
	__u64 last_used_ns; /* bpf_ktime_get_ns() */
	__u32 backend_id;
	__u32 pad;
};

/* One backend a socket was translated to, and the frontend it shows instead. */
struct lb_sk_rev_slot {
	__u8 addr[16]; /* backend */
	__be16 port;
	__u8 family; /* 0: free slot */
	__u8 pad[5];
	struct lb_revnat rev;
};
/* A connected socket uses slot 0 alone; an unconnected UDP socket sending to several frontends
 * one slot each, the oldest replaced when all are taken (its replies from that backend then show
 * the backend's address, as they would after an LRU eviction of Cilium's reverse map). */
#define LB_SK_REV_SLOTS 4
struct lb_sk_rev {
	struct bpf_spin_lock lock; /* a UDP socket's sendmsg and recvmsg may run on two CPUs at once */
	__u32 next; /* the slot a new backend takes when all are taken */
	struct lb_sk_rev_slot slot[LB_SK_REV_SLOTS];
};

#define LB_MAGLEV_LUT_MAX 65521 /* the largest table size weir accepts (Cilium's primes up to it) */

#endif /* WEIR_COMMON_H */

/* SPDX-License-Identifier: Apache-2.0 */
/* IP -> security identity (weir_ipcache, longest prefix wins).
 *
 *   ipcache_identity(family, addr) -> identity
 *     family  4 or 6
 *     addr    16 bytes, IPv4 in the first 4 (network order)
 *   ipcache_lookup(family, addr) -> struct ipcache_value * or NULL (no matching prefix)
 *   No matching prefix is IDENTITY_WORLD (2): anything weir does not know is outside the cluster.
 *   (Single-stack semantics: world-ipv4/world-ipv6 are not split here; the agent may still insert
 *   0.0.0.0/0 or ::/0 with its own identity.)
 */
#ifndef WEIR_IPCACHE_H
#define WEIR_IPCACHE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lib/common.h"

#define WEIR_IPCACHE_MAX 512000 /* Cilium's default */

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_value);
	__uint(max_entries, WEIR_IPCACHE_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} weir_ipcache SEC(".maps");

static __always_inline struct ipcache_value *ipcache_lookup(__u8 family, const __u8 *addr)
{
	struct ipcache_key key = { .family = family };

	key.prefixlen = IPCACHE_STATIC_PREFIX + (family == 4 ? 32 : 128);
	__builtin_memcpy(key.addr, addr, 16);
	return bpf_map_lookup_elem(&weir_ipcache, &key);
}

static __always_inline __u32 ipcache_identity(__u8 family, const __u8 *addr)
{
	struct ipcache_value *val = ipcache_lookup(family, addr);

	return val ? val->identity : IDENTITY_WORLD;
}

#endif /* WEIR_IPCACHE_H */

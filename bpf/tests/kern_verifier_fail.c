// SPDX-License-Identifier: Apache-2.0
/* A program the verifier must reject (packet read without a bounds check), for the
 * ERR_BPF_VERIFIER test in src/bpf. It compiles cleanly; only the kernel refuses it. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int weir_oob_read(struct __sk_buff *skb)
{
	__u8 *data = (void *)(long)skb->data;

	return data[64] == 1 ? TC_ACT_SHOT : TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";

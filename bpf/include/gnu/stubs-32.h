/* Empty on purpose. <linux/icmp.h> pulls in glibc's <sys/socket.h> through <linux/if.h>; for
 * -target bpf glibc's <gnu/stubs.h> (not __x86_64__) then asks for the 32-bit stubs, which a
 * 64-bit-only host does not have. BPF programs use no glibc function, so no stub is needed. */

// Mirrors struct tunnel_config (bpf/lib/common.h): weir_tunnel[0], tunnel mode (bpf/lib/overlay.h).
import { cstruct, u16, u32 } from '../../../bpf/index.js';

export const TunnelConfig = cstruct('tunnel_config', {
  /** The node's VXLAN device (external / collect_md); 0 = no tunnel. */
  ifindex: u32(),
  flags: u16(),
  /** --encryption mtls: the node proxy's outbound tunnel listener (host order); 0 = off. */
  encryptPort: u16(),
});

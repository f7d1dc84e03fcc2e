// The agent's --host-routing for lab suites: WEIR_TEST_HOST_ROUTING=legacy runs a suite with the
// node's IP stack routing pod traffic; unset, the agent's default (bpf, eBPF host routing).
import { HOST_ROUTING_MODES, type HostRouting } from '../../src/datapath/loader.js';

/** startAgent options that pass WEIR_TEST_HOST_ROUTING on (nothing when it is unset). */
export function hostRoutingAgent(): { settings?: { hostRouting: HostRouting } } {
  const mode = process.env.WEIR_TEST_HOST_ROUTING;
  if (!mode) return {};
  if (!(HOST_ROUTING_MODES as readonly string[]).includes(mode))
    throw new Error(`WEIR_TEST_HOST_ROUTING must be one of ${HOST_ROUTING_MODES.join(', ')}, not '${mode}'`);
  return { settings: { hostRouting: mode as HostRouting } };
}

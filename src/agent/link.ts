// How the CLI and libraries (conformance) reach a lab's agent: the client, and the lab hooks that
// keep the agent's endpoints in step with the lab's pods (attach before a pod's veth comes up;
// sync afterwards).
import { AgentClient } from './client.js';
import { agentSocket } from './paths.js';
import type { ApplyOptions } from '../lab/index.js';

export function agentClient(lab: string): AgentClient {
  return new AgentClient(agentSocket(lab));
}

/** Lab apply/delete options that tell the agent; call `sync()` once the lab change is done. */
export function agentHooks(lab: string): { hooks: ApplyOptions; sync: () => Promise<void> } {
  const client = agentClient(lab);
  let dirty = false;
  const mark = () => {
    dirty = true;
  };
  return {
    hooks: {
      onPodPlumbed: async (pod) => {
        dirty = true;
        await client.call('POST', '/v1/endpoints', { pod });
      },
      onPodCreated: mark,
      onPodUpdated: mark,
      onPodRemoved: mark,
      onNamespaceUpdated: mark,
    },
    sync: async () => {
      if (dirty) await client.call('POST', '/v1/sync');
    },
  };
}

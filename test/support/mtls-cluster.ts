// What the two-node mutual-authentication tests share (tunnel and native routing): the nodes'
// underlay addresses, the policy requiring authentication from client to server on 8080, and
// commands asked of one node's agent.
import type { AuthStatus } from '../../src/agent/auth.js';
import { cli, ok } from './cli.js';

export const NODE1_UL = '198.18.0.11';
export const NODE2_UL = '198.18.0.12';

export const authRequiredPolicy = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: server-auth }
spec:
  endpointSelector: { matchLabels: { app: server } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: client } }]
      toPorts: [{ ports: [{ port: "8080", protocol: TCP }] }]
      authentication: { mode: required }
`;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Commands of lab `lab` asked of one node's agent, and a TCP probe to 8080. */
export function nodeCommands(lab: string) {
  const onNode = async (node: string, args: string[]) => {
    process.env.WEIR_NODE = node;
    try {
      return await ok(args, lab);
    } finally {
      delete process.env.WEIR_NODE;
    }
  };
  return {
    onNode,
    authOf: async (node: string) =>
      JSON.parse(await onNode(node, ['auth', 'list', '-o', 'json'])) as AuthStatus,
    probe: async (from: string, to: string): Promise<boolean> =>
      (await cli(['lab', 'probe', '--from', from, '--to', to, '--port', '8080/TCP', '--timeout', '800'], lab))
        .code === 0,
  };
}

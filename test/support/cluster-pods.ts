// The pods the multi-node lab tests share: client and other on node1, server (port 8080) on node2,
// so every client → server connection crosses between the nodes.
export const crossNodePods = `
apiVersion: v1
kind: Pod
metadata: { name: client, labels: { app: client } }
spec: { nodeName: node1, containers: [{ name: c }] }
---
apiVersion: v1
kind: Pod
metadata: { name: other, labels: { app: other } }
spec: { nodeName: node1, containers: [{ name: c }] }
---
apiVersion: v1
kind: Pod
metadata: { name: server, labels: { app: server } }
spec: { nodeName: node2, containers: [{ name: c, ports: [{ containerPort: 8080 }] }] }
`;

/** A policy: server accepts 8080/TCP from client only (other is denied). */
export const serverFromClient = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: server-from-client }
spec:
  endpointSelector: { matchLabels: { app: server } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: client } }]
      toPorts: [{ ports: [{ port: "8080", protocol: TCP }] }]
`;

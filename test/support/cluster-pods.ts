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

/**
 * The NodePort tests' backend: pod default/web (app: web) on node2, serving the workload's HTTP on
 * 8080 ("http") and any more container `ports` (YAML flow mappings); YAML ending in `---`.
 */
export const webOnNode2 = (...ports: string[]) => `
apiVersion: v1
kind: Pod
metadata: { name: web, namespace: default, labels: { app: web } }
spec:
  nodeName: node2
  containers:
  - name: c
    ports:
    - { name: http, containerPort: 8080 }
${ports.map((p) => `    - ${p}\n`).join('')}---`;

/** NodePort Service web: port 80 → "http" on nodePort 30080, and any more `ports` (YAML flow mappings). */
export const webNodePort = (...ports: string[]) => `
apiVersion: v1
kind: Service
metadata: { name: web }
spec:
  type: NodePort
  selector: { app: web }
  ports:
  - { name: http, port: 80, targetPort: http, nodePort: 30080 }
${ports.map((p) => `  - ${p}\n`).join('')}`;

// The cluster DNS add-on `weir lab up` applies through the agent's API (as kubeadm installs
// CoreDNS): namespace kube-system, the DNS pod kube-system/coredns (label k8s-app=kube-dns; the
// lab runs its DNS server there) and the Service kube-system/kube-dns (ClusterIP, 53/UDP and
// 53/TCP) that pods' resolv.conf names.
// The kinds the API takes (Service among them), registered with the manifest loader.
import '../cluster/kinds.js';
import { parseManifests } from '../k8s/manifest.js';
import { toDesired, type DesiredObject } from '../cluster/objects.js';
import { clusterDnsPod, clusterDnsService } from './zone.js';

export const clusterDnsManifest = `apiVersion: v1
kind: Namespace
metadata:
  name: ${clusterDnsPod.namespace}
---
apiVersion: v1
kind: Pod
metadata:
  name: ${clusterDnsPod.name}
  namespace: ${clusterDnsPod.namespace}
  labels: { k8s-app: kube-dns }
spec:
  containers:
    - name: coredns
      ports:
        - { name: dns, containerPort: 53, protocol: UDP }
        - { name: dns-tcp, containerPort: 53, protocol: TCP }
---
apiVersion: v1
kind: Service
metadata:
  name: ${clusterDnsService.name}
  namespace: ${clusterDnsService.namespace}
  labels: { k8s-app: kube-dns }
spec:
  selector: { k8s-app: kube-dns }
  ports:
    - { name: dns, port: 53, targetPort: 53, protocol: UDP }
    - { name: dns-tcp, port: 53, targetPort: 53, protocol: TCP }
`;

export function clusterDnsObjects(): DesiredObject[] {
  return parseManifests(clusterDnsManifest, '<cluster DNS add-on>').map(toDesired);
}

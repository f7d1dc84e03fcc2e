// The Store contract against etcd, as a program: etcd.privileged.test.ts runs it inside the
// network namespace where its etcd listens (`nsenter --net=… node etcd-contract-run.js <url>`), so
// the test's client traffic stays inside that namespace. node:test reports and sets the exit code.
import { storeContract } from './contract.js';
import { EtcdStore } from './etcd.js';

const url = process.argv[2];
if (!url) {
  process.stderr.write('usage: etcd-contract-run.js <etcd client URL>\n');
  process.exit(2);
}
storeContract(`etcd (${url})`, () => EtcdStore.connect({ endpoints: [url] }));

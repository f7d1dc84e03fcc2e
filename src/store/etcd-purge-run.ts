// Removes weir's keys (and their leases) from an etcd weir does not run, as a program: `weir lab
// down` runs it inside a node's network namespace (where that etcd is reachable), `nsenter --net=…
// node etcd-purge-run.js <url,…> <prefix>`. Prints {"keys":n,"leases":n}; exits 1 with the error.
import { EtcdStore } from './etcd.js';

const [urls, prefix] = process.argv.slice(2);
if (!urls || !prefix) {
  process.stderr.write('usage: etcd-purge-run.js <etcd client URL,…> <prefix>\n');
  process.exit(2);
}
try {
  const store = await EtcdStore.connect({ endpoints: urls.split(','), timeoutMs: 5000 });
  try {
    process.stdout.write(`${JSON.stringify(await store.purge(prefix))}\n`);
  } finally {
    await store.close();
  }
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
}

// `weir auth list` (the identity pairs mutual authentication let through, as weir_auth holds them,
// with the auth listener's counters) and `weir identity cert get <id>` (an identity's SVID).
import { Command } from 'commander';
import { agentClient } from '../../agent/client.js';
import type { AuthPairRow, AuthStatus, IdentityCert, NodeCert } from '../../agent/auth.js';
import type { CaStatus } from '../../auth/ca-store.js';
import { WeirError } from '../../shared/errors.js';
import { printResult, type OutputFormat } from '../output.js';
import { labOption, outputOption } from './lab.js';

// The node's agent (env WEIR_NODE; default the first node's, which also runs the CA).
const agent = (lab: string) => agentClient(lab);
const caAgent = (lab: string) => agentClient(lab, undefined, '');

export function authCommand(): Command {
  const cmd = new Command('auth').description(
    'mutual authentication: identity pairs authenticated by an mTLS handshake (weir_auth)',
  );
  cmd
    .command('list')
    .alias('ls')
    .description(
      'authenticated pairs (source identity, destination identity, node, expiry) and the listener counters',
    )
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (o: { lab: string; output: OutputFormat }) => {
      const s = await agent(o.lab).call<AuthStatus>('GET', '/v1/auth');
      printResult<AuthPairRow>(o.output, s, s.pairs, [
        { header: 'src identity', get: (r) => r.srcIdentity },
        { header: 'dst identity', get: (r) => r.dstIdentity },
        {
          header: 'node',
          get: (r) => r.node ?? (r.remoteNodeId === 0 ? 'local' : r.remoteNodeId),
        },
        { header: 'expires', get: (r) => (r.valid ? r.expires : `${r.expires} (expired)`) },
      ]);
      if (o.output !== 'json' && o.output !== 'yaml') {
        const refused = Object.entries(s.counters.refused)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ');
        process.stdout.write(
          `\nlistener ${s.listener} (trust domain ${s.trustDomain}, ${s.svids} SVIDs): accepted ${s.counters.accepted}; refused: ${refused}\n` +
            `handshakes: ${s.handshakes.ok} ok, ${s.handshakes.failed} failed\n`,
        );
      }
    });
  return cmd;
}

/** `weir identity ca`: added to `weir identity` (the CA runs on the lab's first node). */
export function identityCaCommand(): Command {
  const cmd = new Command('ca').description("the lab's CA (on the first node): its CAs, and rotation");
  const show = (o: OutputFormat, s: CaStatus) => {
    printResult(o, s, s.cas, [
      { header: 'role', get: (r) => r.role },
      { header: 'subject', get: (r) => r.subject },
      { header: 'not after', get: (r) => r.notAfter },
      { header: 'sha-256', get: (r) => r.fingerprint },
    ]);
    if (s.retireAt && o !== 'json' && o !== 'yaml')
      process.stdout.write(`\nthe retiring CA leaves the trust bundle at ${s.retireAt}\n`);
  };
  cmd
    .command('get')
    .description('the CAs in the trust bundle: the signing one, and a retiring one during a rotation')
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (o: { lab: string; output: OutputFormat }) => {
      const a = await caAgent(o.lab).call<{ status: CaStatus }>('GET', '/v1/auth/ca');
      show(o.output, a.status);
    });
  cmd
    .command('rotate')
    .description(
      'a new CA signs from now on; the old one stays trusted for --overlap seconds while every node re-issues its SVIDs and handshakes its pairs again',
    )
    .option('--overlap <seconds>', 'how long the old CA stays trusted (5..2592000)', '300')
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (o: { lab: string; output: OutputFormat; overlap: string }) => {
      if (!/^\d+$/.test(o.overlap))
        throw new WeirError('ERR_CLI_ARGUMENT', `--overlap '${o.overlap}' is not a number of seconds`, {
          location: { field: '--overlap' },
        });
      const s = await caAgent(o.lab).call<CaStatus>('POST', '/v1/auth/ca/rotate', {
        overlapSeconds: Number(o.overlap),
      });
      show(o.output, s);
    });
  return cmd;
}

/** `weir identity cert`: added to `weir identity`. */
/** `weir identity cert get`'s text: the heading lines, then the certificate's fields and its PEM. */
function certText(heading: string[], c: Pick<IdentityCert, 'summary' | 'renewAt' | 'certPem'>): string {
  const s = c.summary;
  return [
    ...heading,
    `Serial:        ${s.serial}`,
    `Issuer:        ${s.issuer}`,
    `Subject:       ${s.subject}`,
    `Key:           ${s.keyAlgorithm}`,
    `Not before:    ${s.notBefore}`,
    `Not after:     ${s.notAfter}`,
    `Renewal at:    ${c.renewAt}`,
    `SHA-256:       ${s.fingerprint}`,
    '',
    c.certPem.trimEnd(),
    '',
  ].join('\n');
}

export function identityCertCommand(): Command {
  const cmd = new Command('cert').description("identities' X.509-SVIDs (issued by the lab's CA)");
  cmd
    .command('get')
    .description(
      "an identity's SVID, or with --node a node's node SVID: PEM and a summary (-o json: both, and the CA's PEM)",
    )
    .argument('[id]', 'numeric identity (a pod identity in use)')
    .option('--node <name>', "the node SVID of node <name> (--encryption mtls), from that node's agent")
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (id: string | undefined, o: { lab: string; output: OutputFormat; node?: string }) => {
      if (o.node !== undefined) {
        if (id !== undefined)
          throw new WeirError('ERR_CLI_ARGUMENT', 'give an identity or --node, not both', {
            location: { field: '--node' },
          });
        const n = await agentClient(o.lab, undefined, o.node).call<NodeCert>(
          'GET',
          `/v1/nodes/${encodeURIComponent(o.node)}/cert`,
        );
        if (o.output === 'json' || o.output === 'yaml') return printResult(o.output, n, [], []);
        process.stdout.write(certText([`Node:          ${n.node}`, `SPIFFE ID:     ${n.spiffeId}`], n));
        return;
      }
      if (id === undefined)
        throw new WeirError('ERR_CLI_ARGUMENT', 'give an identity, or --node <name>', {
          location: { field: 'id' },
        });
      if (!/^\d+$/.test(id))
        throw new WeirError('ERR_CLI_ARGUMENT', `identity '${id}' is not a number`, {
          location: { field: 'id' },
        });
      const c = await agent(o.lab).call<IdentityCert>('GET', `/v1/identities/${id}/cert`);
      if (o.output === 'json' || o.output === 'yaml') return printResult(o.output, c, [], []);
      process.stdout.write(
        certText(
          [
            `Identity:      ${c.identity}`,
            `SPIFFE ID:     ${c.spiffeId}`,
            ...c.serviceAccountIds.map(
              (x, i) =>
                `${i === 0 ? 'Pods (SA):     ' : '               '}${x}  (not in the certificate: one URI SAN)`,
            ),
          ],
          c,
        ),
      );
    });
  return cmd;
}

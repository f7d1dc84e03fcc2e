// The lab CA of the node that runs it (node1), with rotation (`weir identity ca rotate`):
//
//   <dir>/ca.crt, ca.key   the signing CA (key 0600, dir 0700; the key never leaves this node)
//   <dir>/previous.crt     after a rotation, the CA before it: still trusted, no longer signing
//   <dir>/rotation.json    {"retireAt": ISO}: when previous.crt leaves the trust bundle
//
// A rotation makes a new CA and signs with it at once; the bundle (what every node's listener and
// client trust) holds both CAs for the overlap, so SVIDs of either verify while each node
// re-issues its SVIDs from the new CA and handshakes its pairs again. At retireAt the old CA
// leaves the bundle; its key was deleted at the rotation (nothing signs with it any more).
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate as NodeX509 } from 'node:crypto';
import { WeirError } from '../shared/errors.js';
import { privateDirSync, privateFileMode } from '../shared/private-fs.js';
import { CertificateAuthority } from './ca.js';

export interface CaInfo {
  fingerprint: string;
  subject: string;
  notAfter: string;
  /** signing: issues SVIDs; retiring: trusted until retireAt, signs nothing. */
  role: 'signing' | 'retiring';
}

export interface CaStatus {
  cas: CaInfo[];
  retireAt?: string;
}

const writeAtomic = (file: string, text: string) => {
  writeFileSync(`${file}.tmp`, text, { mode: privateFileMode });
  renameSync(`${file}.tmp`, file);
};

export class CaStore {
  #current: CertificateAuthority;
  #previous: { pem: string; retireAt: number } | undefined;

  private constructor(
    readonly dir: string,
    current: CertificateAuthority,
  ) {
    this.#current = current;
  }

  /** The CA kept in `dir` (created on first use, CertificateAuthority.open), with its rotation state. */
  static async open(dir: string): Promise<CaStore> {
    const store = new CaStore(dir, await CertificateAuthority.open(dir));
    const prev = join(dir, 'previous.crt');
    const rot = join(dir, 'rotation.json');
    if (existsSync(prev) && existsSync(rot)) {
      const { retireAt } = JSON.parse(readFileSync(rot, 'utf8')) as { retireAt?: string };
      const at = retireAt ? Date.parse(retireAt) : NaN;
      if (!Number.isFinite(at))
        throw new WeirError('ERR_AUTH_CA', `${rot}: retireAt is not a time`, {
          location: { file: rot, field: 'retireAt' },
        });
      store.#previous = { pem: readFileSync(prev, 'utf8'), retireAt: at };
    }
    store.tick();
    return store;
  }

  get current(): CertificateAuthority {
    return this.#current;
  }

  /** The trust bundle: the signing CA first, then a retiring one. */
  bundlePem(): string {
    return this.#current.certPem + (this.#previous ? this.#previous.pem : '');
  }

  status(): CaStatus {
    const info = (pem: string, role: CaInfo['role']): CaInfo => {
      const c = new NodeX509(pem);
      return {
        fingerprint: c.fingerprint256,
        subject: c.subject,
        notAfter: new Date(c.validTo).toISOString(),
        role,
      };
    };
    return {
      cas: [
        info(this.#current.certPem, 'signing'),
        ...(this.#previous ? [info(this.#previous.pem, 'retiring')] : []),
      ],
      ...(this.#previous ? { retireAt: new Date(this.#previous.retireAt).toISOString() } : {}),
    };
  }

  /**
   * A new signing CA; the current one stays trusted for `overlapSeconds`. Refused while an earlier
   * rotation's old CA is still trusted (one overlap at a time).
   */
  async rotate(overlapSeconds: number): Promise<CaStatus> {
    if (!Number.isInteger(overlapSeconds) || overlapSeconds < 5 || overlapSeconds > 30 * 86_400)
      throw new WeirError('ERR_AUTH_CA_ROTATE', `overlap ${overlapSeconds} s is not 5..2592000 seconds`, {
        location: { field: 'overlapSeconds' },
      });
    if (this.#previous)
      throw new WeirError(
        'ERR_AUTH_CA_ROTATE',
        `a rotation is in progress: the previous CA is trusted until ${new Date(this.#previous.retireAt).toISOString()}`,
        { location: { object: 'CA' } },
      );
    privateDirSync(this.dir);
    const { ca, keyPem } = await CertificateAuthority.create(`weir CA ${new Date().toISOString()}`);
    const retireAt = Date.now() + overlapSeconds * 1000;
    // The old certificate and the rotation first: a crash in between leaves both trusted.
    writeAtomic(join(this.dir, 'previous.crt'), this.#current.certPem);
    writeAtomic(
      join(this.dir, 'rotation.json'),
      JSON.stringify({ retireAt: new Date(retireAt).toISOString() }),
    );
    writeAtomic(join(this.dir, 'ca.key'), keyPem);
    writeAtomic(join(this.dir, 'ca.crt'), ca.certPem);
    this.#previous = { pem: this.#current.certPem, retireAt };
    this.#current = ca;
    return this.status();
  }

  /** Retires the previous CA once its overlap ended; true when the bundle changed. */
  tick(now = Date.now()): boolean {
    if (!this.#previous || now < this.#previous.retireAt) return false;
    rmSync(join(this.dir, 'previous.crt'), { force: true });
    rmSync(join(this.dir, 'rotation.json'), { force: true });
    this.#previous = undefined;
    return true;
  }
}

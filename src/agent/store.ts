// The agent's persisted state: the policy objects applied to it, the identity allocator's state and
// the endpoint ids it handed out. Saved atomically (tmp + rename) after every change, so a restarted
// agent resumes with the same identities and endpoint ids and rewrites nothing in the kernel.
// `revision` counts changes made through the Store's methods, so callers can skip saving when
// nothing changed (the state can be large: every CIDR identity and policy object).
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { WeirError } from '../shared/errors.js';
import { privateDirSync, privateFileMode } from '../shared/private-fs.js';
import { defaultSettings, isPersisted, type AgentSettings } from './settings.js';

export interface StoredObject {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
  /** The file it was applied from, for error messages and `weir get`. */
  file?: string;
  object: unknown;
}

// The persisted settings (AgentSettings) and their defaults are declared in settings.ts.
export { defaultSettings, type AgentSettings } from './settings.js';

export interface AgentState {
  version: 1;
  settings?: AgentSettings;
  objects: StoredObject[];
  identities: unknown;
  /** "namespace/pod" -> endpoint id */
  endpointIds: Record<string, number>;
  nextEndpointId: number;
  /** Service load balancing's stable ids: backend "addr:port/PROTO" and frontend -> number. */
  lb?: { backends: Record<string, number>; revNat: Record<string, number> };
}

export const objectKey = (o: { kind: string; namespace?: string; name: string }) =>
  `${o.kind}/${o.namespace ? `${o.namespace}/` : ''}${o.name}`;

export class Store {
  state: AgentState;
  #revision = 0;

  /** Advances on every change made through settings(), endpointId() and releaseEndpoint(). */
  get revision(): number {
    return this.#revision;
  }

  constructor(readonly path: string) {
    this.state = Store.read(path);
  }

  private static read(path: string): AgentState {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        return { version: 1, objects: [], identities: undefined, endpointIds: {}, nextEndpointId: 1 };
      throw err;
    }
    try {
      const state = JSON.parse(text) as AgentState;
      if (state.version !== 1) throw new Error(`unknown version ${String(state.version)}`);
      return state;
    } catch (err) {
      throw new WeirError('ERR_AGENT_STATE', `cannot read agent state ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  save(): void {
    privateDirSync(dirname(this.path));
    const tmp = `${this.path}.tmp`;
    rmSync(tmp, { force: true }); // a leftover would keep its old mode
    writeFileSync(tmp, JSON.stringify(this.state), { mode: privateFileMode });
    renameSync(tmp, this.path);
  }

  /**
   * The stored settings, overridden by those given (which are then stored); a setting neither
   * given nor stored has its default. Only persisted settings are kept.
   */
  settings(given: Partial<AgentSettings>): AgentSettings {
    const defined = Object.fromEntries(
      Object.entries({ ...this.state.settings, ...given }).filter(
        ([k, v]) => v !== undefined && isPersisted(k),
      ),
    );
    this.state.settings = { ...defaultSettings, ...defined } as AgentSettings;
    this.#revision++;
    return this.state.settings;
  }

  endpointId(podKey: string): number {
    let id = this.state.endpointIds[podKey];
    if (id === undefined) {
      id = this.state.nextEndpointId++;
      this.state.endpointIds[podKey] = id;
      this.#revision++;
    }
    return id;
  }

  releaseEndpoint(podKey: string): void {
    delete this.state.endpointIds[podKey];
    this.#revision++;
  }
}

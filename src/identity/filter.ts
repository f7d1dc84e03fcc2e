// Which labels are security relevant. Cilium's default filter drops labels that change per pod
// (pod-template-hash, controller-uid, ...) so that replicas share one identity.
// Documentation/operations/performance/scalability/identity-relevant-labels.rst.
import type { Label } from './labels.js';

export interface LabelPattern {
  /** Regex source, anchored at the start of the label key. */
  pattern: string;
  exclude: boolean;
}

/** Cilium's defaults. The namespace and cilium labels are listed as inclusions so that they
 * survive `!io.kubernetes` (the longest matching pattern decides). */
export const defaultLabelPatterns: readonly LabelPattern[] = [
  { pattern: 'io\\.kubernetes\\.pod\\.namespace', exclude: false },
  { pattern: 'io\\.cilium\\.k8s\\.namespace\\.labels', exclude: false },
  { pattern: 'io\\.cilium\\.k8s\\.policy', exclude: false },
  { pattern: 'app\\.kubernetes\\.io', exclude: false },
  { pattern: 'io\\.kubernetes', exclude: true },
  { pattern: 'kubernetes\\.io', exclude: true },
  { pattern: 'statefulset\\.kubernetes\\.io/pod-name', exclude: true },
  { pattern: 'apps\\.kubernetes\\.io/pod-index', exclude: true },
  { pattern: 'batch\\.kubernetes\\.io', exclude: true },
  { pattern: 'beta\\.kubernetes\\.io', exclude: true },
  { pattern: 'k8s\\.io', exclude: true },
  { pattern: 'pod-template-generation', exclude: true },
  { pattern: 'pod-template-hash', exclude: true },
  { pattern: 'controller-revision-hash', exclude: true },
  { pattern: 'controller-uid', exclude: true },
  { pattern: 'job-name', exclude: true },
  { pattern: 'annotation.*', exclude: true },
  { pattern: 'etcd_node', exclude: true },
];

/**
 * Keeps or drops labels by key. The longest (most specific) matching pattern decides; a key no
 * pattern matches is kept unless the user configured inclusive patterns of their own, in which
 * case only included keys count (Cilium's rule). Reserved labels are always kept.
 */
export class LabelFilter {
  private readonly compiled: { re: RegExp; exclude: boolean; len: number }[];
  private readonly userInclusive: boolean;
  /** Verdicts by key: every pod repeats the same few keys, and each test runs many regexes. */
  private readonly verdicts = new Map<string, boolean>();

  constructor(
    userPatterns: readonly LabelPattern[] = [],
    defaults: readonly LabelPattern[] = defaultLabelPatterns,
  ) {
    this.userInclusive = userPatterns.some((p) => !p.exclude);
    this.compiled = [...defaults, ...userPatterns].map((p) => ({
      re: new RegExp(`^(?:${p.pattern})`),
      exclude: p.exclude,
      len: p.pattern.length,
    }));
  }

  /** Parses Cilium's `--labels` syntax: "k8s:app k8s:!job-name ..." (source prefix optional). */
  static parse(spec: string): LabelFilter {
    const patterns = spec
      .split(/\s+/)
      .filter(Boolean)
      .map((tok) => {
        const body = tok.replace(/^(k8s|any|container):/, '');
        return body.startsWith('!')
          ? { pattern: body.slice(1), exclude: true }
          : { pattern: body, exclude: false };
      });
    return new LabelFilter(patterns);
  }

  keep(label: Label): boolean {
    if (label.source === 'reserved' || label.source === 'cidr') return true;
    let keep = this.verdicts.get(label.key);
    if (keep === undefined) {
      keep = this.decide(label.key);
      if (this.verdicts.size >= 65536) this.verdicts.clear();
      this.verdicts.set(label.key, keep);
    }
    return keep;
  }

  private decide(key: string): boolean {
    let best: { exclude: boolean; len: number } | undefined;
    for (const c of this.compiled) if (c.re.test(key) && (!best || c.len > best.len)) best = c;
    if (best) return !best.exclude;
    return !this.userInclusive;
  }

  filter(labels: readonly Label[]): Label[] {
    return labels.filter((l) => this.keep(l));
  }
}

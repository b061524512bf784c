/**
 * The method registry, read once from the Rust core (`crate/src/methods/`, one file per method):
 * names, the banks each method needs, its parameters with types, defaults and ranges, and whether
 * its ranking reduces to an inner product of augmented vectors. The facade, the CLI and persistence
 * read this table instead of keeping their own copies.
 * @module
 */
import { native } from './native.js';

/** A parameter of the method table. */
export interface ParamInfo {
  /** Option name (`betaQuery`); the CLI flag is its kebab-case form (`--beta-query`). */
  readonly name: string;
  /** `int` (a count ≤ 2^32 − 1) or `float`. */
  readonly kind: 'int' | 'float';
  /** Default value. */
  readonly default: number;
  /** The default applies to cosine embeddings only; elsewhere the parameter is required (β). */
  readonly defaultCosineOnly: boolean;
  /** Lower bound (inclusive when `minInclusive`). */
  readonly min: number;
  /** Whether `min` itself is valid. */
  readonly minInclusive: boolean;
  /** Upper bound (inclusive). */
  readonly max: number;
  /** One line of description. */
  readonly doc: string;
}

/** A method's descriptor. */
export interface MethodInfo {
  /** The method name. */
  readonly id: string;
  /** Its score in one line. */
  readonly summary: string;
  /** Needs a query-modality bank. */
  readonly queryBank: boolean;
  /** Needs a gallery-modality bank. */
  readonly galleryBank: boolean;
  /** Names of the parameters it reads. */
  readonly params: readonly string[];
  /** Its ranking is an inner product of augmented vectors (`augmentedGallery`). */
  readonly biasReducible: boolean;
  /** Extra columns of the augmented vectors. */
  readonly augmentedColumns: number;
  /** Its code in save files. */
  readonly persistCode: number;
  /** Similarity mode: needs `queryBankGalleryBankSims` (query bank × gallery bank) instead of `galleryBankSims` (DBSN). */
  readonly crossBankSims: boolean;
  /** `tune` can search its parameters (the Sinkhorn methods cannot be tuned yet). */
  readonly tunable: boolean;
}

const table = native.methodTable();

/** Every method descriptor, in table order. */
export const METHOD_INFO: readonly MethodInfo[] = Object.freeze(
  table.methods.map((m) => Object.freeze({ ...m, params: Object.freeze([...m.params]) })),
);

/** Every method parameter, in display order. */
export const PARAM_INFO: readonly ParamInfo[] = Object.freeze(table.params.map((p) => Object.freeze({ ...p, kind: p.kind as ParamInfo['kind'] })));

/** The descriptor of `id`, or `undefined`. */
export function methodInfo(id: string): MethodInfo | undefined {
  return METHOD_INFO.find((m) => m.id === id);
}

/** The kebab-case CLI flag of a parameter (`betaQuery` → `--beta-query`). */
export function paramFlag(name: string): string {
  return '--' + name.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

/**
 * CLI flags of the method parameters, generated from the method table (`--beta-query`, `--k`, …):
 * one flag per parameter, its parser from the parameter's type and range, its help from the
 * table's description and default. Every verb that fits a normaliser uses these.
 * @module
 */
import { type Command, InvalidArgumentError } from 'commander';

import { METHOD_INFO, PARAM_INFO, type ParamInfo, paramFlag } from '../methods.js';
import type { Method, MethodOptions } from '../normalizer.js';

function parserOf(p: ParamInfo): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    const lo = p.minInclusive ? n >= p.min : n > p.min;
    const ok = v.trim() !== '' && Number.isFinite(n) && lo && n <= p.max && (p.kind === 'float' || Number.isSafeInteger(n));
    if (!ok) {
      const rel = p.minInclusive ? '≥' : '>';
      throw new InvalidArgumentError(p.kind === 'int' ? `expected an integer ${rel} ${p.min} and ≤ ${p.max}, got '${v}'` : `expected a number ${rel} ${p.min}, got '${v}'`);
    }
    return n;
  };
}

/** The help line of a parameter: what it is, which methods read it, and its default. */
function helpOf(p: ParamInfo): string {
  const users = METHOD_INFO.filter((m) => m.params.includes(p.name)).map((m) => m.id);
  const def = p.defaultCosineOnly ? `default ${p.default} for cosine embeddings, else required` : `default ${p.default}`;
  return `${p.doc} (${users.join(', ')}; ${def})`;
}

/** Adds one flag per method parameter to `cmd`. */
export function addMethodFlags(cmd: Command): Command {
  for (const p of PARAM_INFO) cmd.option(`${paramFlag(p.name)} <${p.kind === 'int' ? 'n' : 'x'}>`, helpOf(p), parserOf(p));
  return cmd;
}

/** The method options given by the flags (commander stores `--beta-query` as `betaQuery`). */
export function methodOptions(method: Method, flags: Record<string, unknown>): MethodOptions {
  const o: Record<string, unknown> = { method };
  for (const p of PARAM_INFO) if (flags[p.name] !== undefined) o[p.name] = flags[p.name];
  return o as unknown as MethodOptions;
}

/** One help line per method: its name, banks and score (for `--help` texts). */
export function methodsHelp(): string {
  return METHOD_INFO.map((m) => `  ${m.id.padEnd(9)} ${m.queryBank ? (m.galleryBank ? 'both banks ' : 'query bank ') : 'no bank    '} ${m.summary}`).join('\n');
}

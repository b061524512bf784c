import { DbnormError } from './errors.js';
import { U32_MAX, describe } from './validate.js';

/**
 * Candidate ids of {@link Normalizer.rerank}: a flat `Uint32Array` or `BigUint64Array` (queries × c,
 * row-major; `BigUint64Array` is what usearch returns as keys), or one list per query of numbers
 * (`number[][]`) or bigints.
 */
export type CandidateIds = Uint32Array | BigUint64Array | ArrayLike<ArrayLike<number | bigint>>;

function badId(where: string, v: unknown): DbnormError {
  return new DbnormError('ERR_PARAM', `${where} must be an integer gallery index in [0, ${U32_MAX}], got ${typeof v === 'bigint' ? `${v}n` : describe(v)}`);
}

/**
 * Validates candidate ids and flattens them to `Uint32Array` (a copy, except a `Uint32Array`, which
 * the native call copies itself). Every id must be an integer in `[0, 2^32 − 1]` (`ERR_PARAM`);
 * ids at or beyond the gallery size are refused natively (`ERR_SHAPE`).
 * @returns `[ids, c]` with `c` ids per query
 * @throws {@link DbnormError} `ERR_SHAPE` (counts), `ERR_PARAM` (types, ids that are not integers in range)
 * @internal
 */
export function candidateIds(candidates: CandidateIds, rows: number): [Uint32Array, number] {
  if (candidates === null || typeof candidates !== 'object' || (ArrayBuffer.isView(candidates) && !(candidates instanceof Uint32Array) && !(candidates instanceof BigUint64Array))) {
    throw new DbnormError('ERR_PARAM', `candidates must be a Uint32Array, a BigUint64Array or one array of ids per query, got ${describe(candidates)}`);
  }
  if (candidates instanceof Uint32Array || candidates instanceof BigUint64Array) {
    if (rows === 0 ? candidates.length !== 0 : candidates.length % rows !== 0) {
      throw new DbnormError('ERR_SHAPE', `candidates has ${candidates.length} ids, not a multiple of ${rows} queries`);
    }
    const c = rows === 0 ? 0 : candidates.length / rows;
    if (candidates instanceof Uint32Array) return [candidates, c];
    const ids = new Uint32Array(candidates.length);
    for (let i = 0; i < candidates.length; i++) {
      const v = candidates[i]!;
      if (v > BigInt(U32_MAX)) throw badId(`candidates[${i}]`, v);
      ids[i] = Number(v);
    }
    return [ids, c];
  }
  if (typeof candidates.length !== 'number') throw new DbnormError('ERR_PARAM', `candidates must be one array of ids per query, got ${describe(candidates)}`);
  if (candidates.length !== rows) throw new DbnormError('ERR_SHAPE', `candidates has ${candidates.length} lists, expected one per query (${rows})`);
  const rowOf = (i: number): ArrayLike<number | bigint> => {
    const r = candidates[i];
    if (r === null || typeof r !== 'object' || typeof r.length !== 'number') throw new DbnormError('ERR_PARAM', `candidates[${i}] must be an array of ids, got ${describe(r)}`);
    return r;
  };
  const c = rows === 0 ? 0 : rowOf(0).length;
  const ids = new Uint32Array(rows * c);
  for (let i = 0; i < rows; i++) {
    const row = rowOf(i);
    if (row.length !== c) throw new DbnormError('ERR_SHAPE', `candidates[${i}] has ${row.length} ids, candidates[0] has ${c}`);
    for (let j = 0; j < c; j++) {
      const v = row[j];
      const ok = typeof v === 'bigint' ? v >= 0n && v <= BigInt(U32_MAX) : typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= U32_MAX;
      if (!ok) throw badId(`candidates[${i}][${j}]`, v);
      ids[i * c + j] = Number(v);
    }
  }
  return [ids, c];
}

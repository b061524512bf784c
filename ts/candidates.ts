import { DbnormError } from './errors.js';

/**
 * Candidate ids of {@link Normalizer.rerank}: a flat `Uint32Array` or `BigUint64Array` (queries × c,
 * row-major; `BigUint64Array` is what usearch returns as keys), or one list per query of numbers
 * (`number[][]`) or bigints.
 */
export type CandidateIds = Uint32Array | BigUint64Array | ArrayLike<ArrayLike<number | bigint>>;

function badId(where: string, v: unknown): DbnormError {
  return new DbnormError('ERR_PARAM', `${where} must be a non-negative safe integer gallery index, got ${typeof v === 'bigint' ? `${v}n` : String(v)}`);
}

function outOfRange(where: string, v: number | bigint, n: number): DbnormError {
  return new DbnormError('ERR_SHAPE', `${where} = ${String(v)} is out of range (gallery has ${n} items)`);
}

/**
 * Validates candidate ids and flattens them to `Uint32Array` (a copy, except a valid `Uint32Array`,
 * which the native call copies itself). `limit` is the gallery size, or 0 when unknown (similarity
 * mode fitted without matrices): ids are then only checked to fit in 32 bits.
 * @returns `[ids, c]` with `c` ids per query
 * @throws {@link DbnormError} `ERR_SHAPE` (counts, out-of-range ids), `ERR_PARAM` (ids that are not
 *   non-negative safe integers)
 * @internal
 */
export function candidateIds(candidates: CandidateIds, rows: number, limit: number): [Uint32Array, number] {
  const max = limit > 0 ? limit : 0x1_0000_0000;
  if (candidates instanceof Uint32Array || candidates instanceof BigUint64Array) {
    if (rows === 0 ? candidates.length !== 0 : candidates.length % rows !== 0) {
      throw new DbnormError('ERR_SHAPE', `candidates has ${candidates.length} ids, not a multiple of ${rows} queries`);
    }
    const c = rows === 0 ? 0 : candidates.length / rows;
    if (candidates instanceof Uint32Array) {
      for (let i = 0; i < candidates.length; i++) if (candidates[i]! >= max) throw outOfRange(`candidates[${i}]`, candidates[i]!, limit);
      return [candidates, c];
    }
    const ids = new Uint32Array(candidates.length);
    const big = BigInt(max);
    for (let i = 0; i < candidates.length; i++) {
      const v = candidates[i]!;
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw badId(`candidates[${i}]`, v);
      if (v >= big) throw outOfRange(`candidates[${i}]`, v, limit);
      ids[i] = Number(v);
    }
    return [ids, c];
  }
  if (candidates === null || typeof candidates !== 'object' || typeof candidates.length !== 'number') {
    throw new DbnormError('ERR_SHAPE', 'candidates must be a Uint32Array, a BigUint64Array or one list of ids per query');
  }
  if (candidates.length !== rows) throw new DbnormError('ERR_SHAPE', `candidates has ${candidates.length} lists, expected one per query (${rows})`);
  const c = rows === 0 ? 0 : (candidates[0]?.length ?? -1);
  if (!Number.isSafeInteger(c) || c < 0) throw new DbnormError('ERR_SHAPE', 'candidates[0] is not a list of ids');
  const ids = new Uint32Array(rows * c);
  for (let i = 0; i < rows; i++) {
    const row = candidates[i];
    if (row === null || typeof row !== 'object' || row.length !== c) {
      throw new DbnormError('ERR_SHAPE', `candidates[${i}] has ${String(row?.length)} ids, candidates[0] has ${c}`);
    }
    for (let j = 0; j < c; j++) {
      const v = row[j];
      const where = `candidates[${i}][${j}]`;
      if (typeof v === 'bigint') {
        if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) throw badId(where, v);
      } else if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
        throw badId(where, v);
      }
      const n = Number(v);
      if (n >= max) throw outOfRange(where, v, limit);
      ids[i * c + j] = n;
    }
  }
  return [ids, c];
}

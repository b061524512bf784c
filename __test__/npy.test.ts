import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { DbnormError, Matrix, readNpy, readNpySync, writeNpy, writeNpySync } from '../dist/index.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'dbnorm-npy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A hand-made `.npy` v1.0 image (written here byte by byte, independently of the library). */
function npyBytes(descr: string, shape: number[], payload: Buffer, fortran = false): Buffer {
  const shp = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let dict = `{'descr': '${descr}', 'fortran_order': ${fortran ? 'True' : 'False'}, 'shape': ${shp}, }`;
  dict += ' '.repeat((64 - ((10 + dict.length + 1) % 64)) % 64) + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(dict.length, 8);
  return Buffer.concat([head, Buffer.from(dict, 'latin1'), payload]);
}

async function codeOf(p: Promise<unknown>): Promise<DbnormError> {
  try {
    await p;
  } catch (e) {
    return e as DbnormError;
  }
  throw new Error('expected a rejection');
}

describe('readNpy / writeNpy', () => {
  const data = Float32Array.from([0.5, -1.25, 3, 1e-7, 2 ** 20, -0]);

  it('round-trips a matrix (async and sync), as a standard v1.0 <f4 C-order file', async () => {
    const f = path.join(dir, 'm.npy');
    await writeNpy(f, { data, rows: 2, cols: 3 });
    const m = await readNpy(f);
    expect(m).toBeInstanceOf(Matrix);
    expect([m.rows, m.cols]).toEqual([2, 3]);
    expect(Array.from(m.data)).toEqual(Array.from(data));

    const bytes = readFileSync(f);
    expect(bytes.subarray(0, 8).toString('latin1')).toBe('\x93NUMPY\x01\x00');
    const headerLen = bytes.readUInt16LE(8);
    expect((10 + headerLen) % 64).toBe(0);
    expect(bytes.subarray(10, 10 + headerLen).toString('latin1')).toMatch(/'descr': '<f4', 'fortran_order': False, 'shape': \(2, 3\)/);
    expect(bytes.length).toBe(10 + headerLen + 6 * 4);

    const g = path.join(dir, 'm-sync.npy');
    writeNpySync(g, new Matrix(data, 3, 2));
    const s = readNpySync(g);
    expect([s.rows, s.cols]).toEqual([3, 2]);
    expect(Array.from(s.data)).toEqual(Array.from(data));
  });

  it('reads hand-written <f8 (rounded to float32) and 1-D (one row) files', async () => {
    const f8 = Buffer.alloc(4 * 8);
    [0.1, 0.2, -3.5, 1 / 3].forEach((v, i) => f8.writeDoubleLE(v, i * 8));
    writeFileSync(path.join(dir, 'f8.npy'), npyBytes('<f8', [2, 2], f8));
    const m = await readNpy(path.join(dir, 'f8.npy'));
    expect([m.rows, m.cols]).toEqual([2, 2]);
    expect(Array.from(m.data)).toEqual(Array.from(Float32Array.from([0.1, 0.2, -3.5, 1 / 3])));

    const f4 = Buffer.alloc(3 * 4);
    [1, 2, 3].forEach((v, i) => f4.writeFloatLE(v, i * 4));
    writeFileSync(path.join(dir, 'v.npy'), npyBytes('<f4', [3], f4));
    const v = readNpySync(path.join(dir, 'v.npy'));
    expect([v.rows, v.cols, Array.from(v.data)]).toEqual([1, 3, [1, 2, 3]]);
  });

  it('rejects a wrong dtype with ERR_FORMAT naming the file and the dtype', async () => {
    const f = path.join(dir, 'int.npy');
    writeFileSync(f, npyBytes('<i4', [2, 2], Buffer.alloc(16)));
    const e = await codeOf(readNpy(f));
    expect(e).toBeInstanceOf(DbnormError);
    expect(e.code).toBe('ERR_FORMAT');
    expect(e.message).toContain(f);
    expect(e.message).toContain("'<i4'");
    expect(() => readNpySync(f)).toThrow(/invalid \.npy file: unsupported dtype '<i4'/);
  });

  it('rejects Fortran order and truncated data with ERR_FORMAT, a missing file with ERR_IO', async () => {
    const fo = path.join(dir, 'fortran.npy');
    writeFileSync(fo, npyBytes('<f4', [2, 2], Buffer.alloc(16), true));
    expect((await codeOf(readNpy(fo))).message).toMatch(/fortran_order/);
    const tr = path.join(dir, 'trunc.npy');
    writeFileSync(tr, npyBytes('<f4', [4, 4], Buffer.alloc(20)));
    const e = await codeOf(readNpy(tr));
    expect([e.code, /truncated/.test(e.message)]).toEqual(['ERR_FORMAT', true]);
    const missing = await codeOf(readNpy(path.join(dir, 'absent.npy')));
    expect(missing.code).toBe('ERR_IO');
    expect(missing.message).toContain('absent.npy');
  });

  it('validates values on read (ERR_NON_FINITE names the file) and shapes on write (ERR_SHAPE)', async () => {
    const f = path.join(dir, 'nan.npy');
    writeNpySync(f, { data: Float32Array.from([1, NaN]), rows: 1, cols: 2 });
    const e = await codeOf(readNpy(f));
    expect(e.code).toBe('ERR_NON_FINITE');
    expect(e.message).toContain(f);
    const w = await codeOf(writeNpy(path.join(dir, 'bad.npy'), { data: new Float32Array(5), rows: 2, cols: 3 }));
    expect(w.code).toBe('ERR_SHAPE');
  });
});

// Files through the public API: a header cannot abort the process, special files are refused without
// blocking (sync and async, more at once than libuv has workers), and saving never replaces a device,
// FIFO, socket or directory; over a symbolic link it writes the link's target and keeps the link.
// Every failure is one DbnormError with a code. Anything that could hang runs in a child process
// with a generous bound (a hang detector, not a timing target).
import { spawnSync } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { DbnormError, Normalizer, readNpy, readNpySync, writeNpy, writeNpySync } from '../dist/index.js';
import { randomMatrix } from './helpers.js';

const root = path.resolve(__dirname, '..');
const dir = mkdtempSync(path.join(os.tmpdir(), 'dbnorm-files-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** An `.npy` v1 image with the given shape text and raw data bytes. */
function npy(shape: string, data: Uint8Array): Buffer {
  let dict = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shape}, }`;
  const unpadded = 10 + dict.length + 1;
  dict += ' '.repeat(Math.ceil(unpadded / 64) * 64 - unpadded) + '\n';
  const head = Buffer.alloc(10);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]).copy(head);
  head.writeUInt16LE(dict.length, 8);
  return Buffer.concat([head, Buffer.from(dict, 'latin1'), data]);
}

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(DbnormError);
    return (e as DbnormError).code;
  }
  throw new Error('expected a DbnormError');
}

async function codeAsync(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(DbnormError);
    return (e as DbnormError).code;
  }
  throw new Error('expected a DbnormError');
}

/** Runs `script` (CommonJS, `dbnorm` = the built package) in a child node; returns its status and output. */
function child(script: string, timeoutMs = 120_000) {
  const r = spawnSync(process.execPath, ['-e', `const dbnorm = require(${JSON.stringify(root)} + '/dist/index.js');\n${script}`], {
    encoding: 'utf8',
    timeout: timeoutMs,
  });
  return { status: r.status, signal: r.signal, out: `${r.stdout}${r.stderr}` };
}

const norm = Normalizer.fitSync({ gallery: randomMatrix(30, 8, 1) }, { method: 'none', leakGuard: 'off' });

describe('headers cannot abort the process', () => {
  it('a small .npy declaring (200000, 100000) is ERR_FORMAT in-process and in the CLI', async () => {
    const p = path.join(dir, 'huge.npy');
    writeFileSync(p, npy('(200000, 100000)', new Uint8Array(58)));
    expect(readFileSync(p).length).toBeLessThan(200);
    expect(code(() => readNpySync(p))).toBe('ERR_FORMAT');
    expect(await codeAsync(readNpy(p))).toBe('ERR_FORMAT');
    // The CLI used to exit 134 with a Rust backtrace.
    const r = spawnSync(process.execPath, [path.join(root, 'dist/cli.js'), 'eval', '--queries', p, '--gallery', p], { encoding: 'utf8', timeout: 120_000 });
    expect(r.signal).toBeNull();
    expect(r.status).not.toBe(134);
    expect(r.status).not.toBe(0);
    expect(r.stderr).not.toMatch(/panicked|backtrace|memory allocation/i);
  }, 120_000);
});

describe('special files', () => {
  it('FIFOs are refused without blocking: load, loadSync, readNpy, readNpySync, save, writeNpy (8 async at once)', () => {
    const fifo = path.join(dir, 'pipe');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const r = child(`
      const { Normalizer, readNpy, readNpySync, writeNpy, writeNpySync } = dbnorm;
      const fifo = ${JSON.stringify(fifo)};
      const codes = [];
      const grab = (f) => { try { f(); codes.push('ok'); } catch (e) { codes.push(e.code ?? String(e)); } };
      grab(() => Normalizer.loadSync(fifo));
      grab(() => readNpySync(fifo));
      grab(() => writeNpySync(fifo, { data: new Float32Array(1), rows: 1, cols: 1 }));
      const n = Normalizer.fitSync({ gallery: { data: new Float32Array([1, 0, 0, 1]), rows: 2, cols: 2 } }, { method: 'none', leakGuard: 'off' });
      grab(() => n.saveSync(fifo));
      const ps = [];
      for (let i = 0; i < 4; i++) ps.push(Normalizer.load(fifo), readNpy(fifo));
      ps.push(n.save(fifo), writeNpy(fifo, { data: new Float32Array(1), rows: 1, cols: 1 }));
      Promise.allSettled(ps).then((rs) => {
        for (const x of rs) codes.push(x.status === 'fulfilled' ? 'ok' : (x.reason.code ?? String(x.reason)));
        console.log(JSON.stringify(codes));
      });
    `);
    expect(r.signal, r.out).toBeNull();
    expect(r.status, r.out).toBe(0);
    const codes = JSON.parse(r.out.trim().split('\n').pop()!) as string[];
    expect(codes).toHaveLength(14);
    expect(new Set(codes)).toEqual(new Set(['ERR_IO']));
    expect(lstatSync(fifo).isFIFO()).toBe(true);
  }, 120_000);

  it('directories, sockets and /dev/null are refused for reading and never replaced', async () => {
    const sub = path.join(dir, 'sub');
    mkdirSync(sub);
    const sock = path.join(dir, 'sock');
    const server = net.createServer();
    await new Promise<void>((res) => server.listen(sock, res));
    try {
      for (const p of [sub, sock, '/dev/null']) {
        expect(code(() => readNpySync(p)), p).toBe('ERR_IO');
        expect(code(() => Normalizer.loadSync(p)), p).toBe('ERR_IO');
        expect(await codeAsync(Normalizer.load(p)), p).toBe('ERR_IO');
      }
      for (const p of [sub, sock]) {
        expect(code(() => norm.saveSync(p)), p).toBe('ERR_IO');
        expect(await codeAsync(norm.save(p)), p).toBe('ERR_IO');
        expect(await codeAsync(writeNpy(p, { data: new Float32Array(2), rows: 1, cols: 2 })), p).toBe('ERR_IO');
      }
      expect(lstatSync(sub).isDirectory()).toBe(true);
      expect(lstatSync(sock).isSocket()).toBe(true);
    } finally {
      server.close();
    }
  });

  it('saving over a symbolic link writes its target and keeps the link; a dangling link is refused', async () => {
    const real = path.join(dir, 'real');
    mkdirSync(real);
    writeFileSync(path.join(real, 'm.dbn'), 'old');
    const link = path.join(dir, 'm-link.dbn');
    symlinkSync(path.join('real', 'm.dbn'), link);
    await norm.save(link);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(Normalizer.loadSync(path.join(real, 'm.dbn')).galleryCount).toBe(30);
    const dangling = path.join(dir, 'dangling.dbn');
    symlinkSync('nowhere/x.dbn', dangling);
    expect(code(() => norm.saveSync(dangling))).toBe('ERR_IO');
    expect(lstatSync(dangling).isSymbolicLink()).toBe(true);
    writeNpySync(link, { data: new Float32Array([1, 2]), rows: 1, cols: 2 });
    expect(Array.from(readNpySync(path.join(real, 'm.dbn')).data)).toEqual([1, 2]);
    expect(readdirSync(real)).toEqual(['m.dbn']);
  });
});

describe('interrupted saves', () => {
  it('a child killed mid-save leaves no temporary file (6 trials)', () => {
    const kdir = path.join(dir, 'kill');
    mkdirSync(kdir);
    // Each child saves a ~10 MB normaliser in a loop and is killed with SIGKILL once it has started;
    // whatever the moment of the kill, the directory holds at most the target.
    for (let t = 0; t < 6; t++) {
      const r = child(
        `
        const { Normalizer } = dbnorm;
        const rows = 20000, cols = 128, data = new Float32Array(rows * cols);
        for (let i = 0; i < data.length; i++) data[i] = Math.sin(i);
        const n = Normalizer.fitSync({ gallery: { data, rows, cols } }, { method: 'none', leakGuard: 'off' });
        const target = ${JSON.stringify(path.join(kdir, 'm.dbn'))};
        let i = 0;
        const loop = () => { n.save(target).then(loop); if (++i === ${2 + (t % 3)}) setTimeout(() => process.kill(process.pid, 'SIGKILL'), ${t * 7}); };
        loop();
      `,
      );
      expect(r.signal, r.out).toBe('SIGKILL');
      const left = readdirSync(kdir).filter((f) => f !== 'm.dbn');
      expect(left, `trial ${t}`).toEqual([]);
    }
  }, 300_000); // six child processes: sized by work, bounded generously for a loaded machine
});

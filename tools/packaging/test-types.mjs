#!/usr/bin/env node
// `npm run test:types` (also run by __test__/packaging.test.ts): checks the *published* shape of the
// main package, from a tarball packed from the current build (dist/ must be built):
// - @arethetypeswrong/cli: no problem under node10, node16 (CJS), node16 (ESM) and bundler resolution;
// - publint --strict: no error, warning or suggestion;
// - strict TypeScript consumers (`strict`, `skipLibCheck: false`) compile against the installed
//   package in ESM (NodeNext, type module), CJS (NodeNext, `import x = require`), bundler and node10
//   modes, using named imports and the typed default export.
// Usage: node tools/packaging/test-types.mjs [path/to/dbnorm-x.y.z.tgz]   Prints "N passed, N failed".
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = path.join(ROOT, 'node_modules', '.bin');
let passed = 0;
let failed = 0;
const check = (name, ok, detail = '') => {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail && !ok ? `\n${detail}` : ''}`);
};

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dbnorm-types-'));
try {
  let tgz = process.argv[2];
  if (!tgz) {
    const name = execFileSync('npm', ['pack', '--silent', '--ignore-scripts', '--pack-destination', tmp], { cwd: ROOT, encoding: 'utf8' }).trim().split('\n').at(-1);
    tgz = path.join(tmp, name);
  }

  // --- attw ----------------------------------------------------------------------------------
  const attw = spawnSync(path.join(BIN, 'attw'), [tgz, '--format', 'json', '--profile', 'strict'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  let report = null;
  try {
    report = JSON.parse(attw.stdout);
  } catch {
    // reported below
  }
  const analysis = report?.analysis;
  const kinds = ['node10', 'node16-cjs', 'node16-esm', 'bundler'];
  const problems = analysis?.problems ?? null;
  check(
    `attw: no problems (${kinds.join(', ')})`,
    problems !== null && problems.length === 0 && kinds.every((k) => Object.values(analysis.entrypoints).every((e) => e.resolutions[k]?.resolution?.fileName)),
    problems ? JSON.stringify(problems, null, 1).slice(0, 3000) : `${attw.stdout.slice(0, 2000)}\n${attw.stderr.slice(0, 2000)}`,
  );

  // --- unpack into a consumer's node_modules ----------------------------------------------------
  const pkgDir = path.join(tmp, 'unpacked');
  fs.mkdirSync(pkgDir);
  execFileSync('tar', ['-xzf', tgz, '-C', pkgDir]);
  const pkg = path.join(pkgDir, 'package');

  const lint = spawnSync(path.join(BIN, 'publint'), ['run', pkg, '--strict', '--pack', 'false', '--level', 'suggestion'], { encoding: 'utf8' });
  const lintOut = `${lint.stdout}${lint.stderr}`;
  check('publint --strict: clean (no suggestion, warning or error)', lint.status === 0 && !/Suggestions?:|Warnings?:|Errors?:/.test(lintOut), lintOut);

  // --- strict consumers ------------------------------------------------------------------------
  const program = (kind) => {
    const imp =
      kind === 'cjs'
        ? "import dbnorm = require('dbnorm');\nimport { Normalizer, DbnormError, METHODS, type Method } from 'dbnorm';"
        : "import dbnorm, { Normalizer, DbnormError, METHODS, type Method } from 'dbnorm';";
    return `${imp}
const m: Method = METHODS[0]!;
const check: typeof Normalizer.fit = dbnorm.Normalizer.fit;
const e: DbnormError = new dbnorm.DbnormError('ERR_NO_BINDING', 'x');
export async function run(q: Float32Array): Promise<number> {
  const n = await Normalizer.fit({ gallery: { data: q, rows: 1, cols: q.length } }, { method: m });
  const top = await n.search({ data: q, rows: 1, cols: q.length }, { k: 1 });
  void check; void e;
  return top.indices[0]! + (dbnorm.METHODS.length as number);
}
`;
  };
  const modes = [
    { kind: 'esm', type: 'module', compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext' } },
    { kind: 'cjs', type: 'commonjs', compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', esModuleInterop: true } },
    { kind: 'bundler', type: 'module', compilerOptions: { module: 'ESNext', moduleResolution: 'bundler' } },
    { kind: 'node10', type: 'commonjs', compilerOptions: { module: 'CommonJS', moduleResolution: 'node10', esModuleInterop: true, ignoreDeprecations: '6.0' } },
  ];
  for (const m of modes) {
    const dir = path.join(tmp, `consumer-${m.kind}`);
    fs.mkdirSync(path.join(dir, 'node_modules', '@types'), { recursive: true });
    fs.cpSync(pkg, path.join(dir, 'node_modules', 'dbnorm'), { recursive: true });
    // a consumer has the package's dependencies and @types/node: link the repo's copies
    fs.symlinkSync(path.join(ROOT, 'node_modules', '@types', 'node'), path.join(dir, 'node_modules', '@types', 'node'));
    for (const dep of ['commander', 'cli-progress', '@types/cli-progress']) {
      const src = path.join(ROOT, 'node_modules', dep);
      if (fs.existsSync(src)) {
        fs.mkdirSync(path.dirname(path.join(dir, 'node_modules', dep)), { recursive: true });
        fs.symlinkSync(src, path.join(dir, 'node_modules', dep));
      }
    }
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: `consumer-${m.kind}`, private: true, type: m.type }));
    fs.writeFileSync(path.join(dir, 'index.ts'), program(m.kind));
    fs.writeFileSync(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { target: 'ES2022', strict: true, skipLibCheck: false, noEmit: true, types: ['node'], ...m.compilerOptions }, files: ['index.ts'] }),
    );
    const r = spawnSync(path.join(BIN, 'tsc'), ['-p', dir], { encoding: 'utf8' });
    check(`strict consumer (skipLibCheck: false), ${m.kind}: compiles`, r.status === 0, `${r.stdout}${r.stderr}`);
  }
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);

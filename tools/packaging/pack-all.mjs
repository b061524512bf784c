#!/usr/bin/env node
// `npm run pack:all`: builds the host addon and the TypeScript facade, builds every published target
// (tools/packaging/build-targets.mjs), checks the package set is coherent, and writes every tarball
// (dbnorm + one per target) into packages/ (git-ignored); the packed dbnorm gets `optionalDependencies`
// on every platform package at the same version. `--no-build` packs what is already built.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { TARGETS, binaryFile, packageName } from './targets.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const OUT = path.join(ROOT, 'packages');
const build = !process.argv.includes('--no-build');
const run = (cmd, args, cwd = ROOT) => execFileSync(cmd, args, { cwd, stdio: 'inherit' });

const root = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
// the package set must agree with itself before anything is built
const problems = [];
const triples = TARGETS.map((t) => t.triple);
if (JSON.stringify(root.napi?.targets) !== JSON.stringify(triples)) problems.push(`package.json napi.targets ${JSON.stringify(root.napi?.targets)} ≠ packaging/targets.mjs ${JSON.stringify(triples)}`);
for (const t of TARGETS) {
  const pj = path.join(ROOT, 'npm', t.abi, 'package.json');
  if (!fs.existsSync(pj)) {
    problems.push(`npm/${t.abi}/package.json missing (napi create-npm-dirs)`);
    continue;
  }
  const p = JSON.parse(fs.readFileSync(pj, 'utf8'));
  if (p.name !== packageName(t)) problems.push(`npm/${t.abi}: name ${p.name}`);
  if (p.version !== root.version) problems.push(`npm/${t.abi}: version ${p.version} ≠ ${root.version}`);
  if (!p.files.includes(binaryFile(t))) problems.push(`npm/${t.abi}: files lacks ${binaryFile(t)}`);
}
if (problems.length) {
  console.error(`pack:all: the package set is inconsistent:\n  ${problems.join('\n  ')}`);
  process.exit(1);
}

if (build) {
  run('npm', ['run', 'build']);
  run(process.execPath, [path.join(ROOT, 'tools', 'packaging', 'build-targets.mjs')]);
}
fs.rmSync(OUT, { recursive: true, force: true });
fs.mkdirSync(OUT);
for (const t of TARGETS) {
  const bin = path.join(ROOT, 'npm', t.abi, binaryFile(t));
  if (!fs.existsSync(bin)) throw new Error(`${path.relative(ROOT, bin)} is missing: run without --no-build`);
  run('npm', ['pack', '--silent', '--pack-destination', OUT], path.join(ROOT, 'npm', t.abi));
}
// The published dbnorm lists every platform package as an optional dependency at its own version
// (what `napi prepublish` does). They are added only to the packed package.json: in the repo's
// package.json they would break `npm ci` on a checkout, since the platform packages exist only in
// the registry they are published to, never in package-lock.json.
const pjPath = path.join(ROOT, 'package.json');
const original = fs.readFileSync(pjPath, 'utf8');
const withOptional = { ...root, optionalDependencies: Object.fromEntries(TARGETS.map((t) => [packageName(t), root.version])) };
try {
  fs.writeFileSync(pjPath, JSON.stringify(withOptional, null, 2) + '\n');
  // --ignore-scripts: `prepare` would rebuild what was just built
  run('npm', ['pack', '--silent', '--ignore-scripts', '--pack-destination', OUT]);
} finally {
  fs.writeFileSync(pjPath, original);
}
const packed = JSON.parse(execFileSync('tar', ['-xzOf', path.join(OUT, `dbnorm-${root.version}.tgz`), 'package/package.json'], { encoding: 'utf8' }));
if (JSON.stringify(packed.optionalDependencies) !== JSON.stringify(withOptional.optionalDependencies)) throw new Error('the packed dbnorm lacks its optionalDependencies');
for (const f of fs.readdirSync(OUT).sort()) console.log(`packages/${f}  ${(fs.statSync(path.join(OUT, f)).size / 1e6).toFixed(2)} MB`);

// Post-build step of `npm run build:ts`:
// - writes dist/<entry>.mjs and dist/<entry>.d.mts for each public entry point (the root and the
//   engine subpaths `dbnorm/lancedb`, `dbnorm/usearch`): an ES-module face over the CommonJS build, so
//   `import { Normalizer } from 'dbnorm'` and `require('dbnorm')` load the same single copy; the
//   default export is that same module object, and typed as such. Requiring an engine entry here
//   loads no engine: those modules require `@lancedb/lancedb` / `usearch` only when first used;
// - copies the napi-generated declarations (ts/native/index.d.cts) to dist/native/, where the emitted
//   dist/native.d.ts refers to them, so consumers compiling with `skipLibCheck: false` resolve them.
const fs = require('node:fs');
const path = require('node:path');
const root = path.join(__dirname, '..', '..');
const dist = path.join(root, 'dist');
for (const entry of ['index', 'lancedb', 'usearch']) {
  const names = Object.keys(require(path.join(dist, `${entry}.js`))).filter((n) => n !== 'default' && n !== '__esModule');
  const mjs = [
    `import cjs from './${entry}.js';`,
    ...names.map((n) => `export const ${n} = cjs.${n};`),
    'export default cjs;',
    '',
  ].join('\n');
  fs.writeFileSync(path.join(dist, `${entry}.mjs`), mjs);
  fs.writeFileSync(
    path.join(dist, `${entry}.d.mts`),
    [`export * from './${entry}.js';`, `import * as mod from './${entry}.js';`, `/** The whole module (the same object \`require()\` returns). */`, 'export default mod;', ''].join('\n'),
  );
}
fs.mkdirSync(path.join(dist, 'native'), { recursive: true });
fs.copyFileSync(path.join(root, 'ts', 'native', 'index.d.cts'), path.join(dist, 'native', 'index.d.cts'));

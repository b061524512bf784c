// Post-build step of `npm run build:ts`:
// - writes dist/index.mjs and dist/index.d.mts: an ES-module face over the CommonJS build, so
//   `import { Normalizer } from 'dbnorm'` and `require('dbnorm')` load the same single copy; the
//   default export is that same module object, and typed as such;
// - copies the napi-generated declarations (ts/native/index.d.cts) to dist/native/, where the emitted
//   dist/native.d.ts refers to them, so consumers compiling with `skipLibCheck: false` resolve them.
const fs = require('node:fs');
const path = require('node:path');
const root = path.join(__dirname, '..', '..');
const dist = path.join(root, 'dist');
const names = Object.keys(require(path.join(dist, 'index.js'))).filter((n) => n !== 'default' && n !== '__esModule');
const mjs = [
  "import cjs from './index.js';",
  ...names.map((n) => `export const ${n} = cjs.${n};`),
  'export default cjs;',
  '',
].join('\n');
fs.writeFileSync(path.join(dist, 'index.mjs'), mjs);
fs.writeFileSync(
  path.join(dist, 'index.d.mts'),
  ["export * from './index.js';", "import * as dbnorm from './index.js';", '/** The whole module (the same object `require(\'dbnorm\')` returns). */', 'export default dbnorm;', ''].join('\n'),
);
fs.mkdirSync(path.join(dist, 'native'), { recursive: true });
fs.copyFileSync(path.join(root, 'ts', 'native', 'index.d.cts'), path.join(dist, 'native', 'index.d.cts'));

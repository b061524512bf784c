// Writes dist/index.mjs and dist/index.d.mts: an ES-module face over the CommonJS build, so
// `import { Normalizer } from 'dbnorm'` and `require('dbnorm')` load the same single copy.
const fs = require('node:fs');
const path = require('node:path');
const dist = path.join(__dirname, '..', '..', 'dist');
const names = Object.keys(require(path.join(dist, 'index.js'))).filter((n) => n !== 'default' && n !== '__esModule');
const mjs = [
  "import cjs from './index.js';",
  ...names.map((n) => `export const ${n} = cjs.${n};`),
  'export default cjs;',
  '',
].join('\n');
fs.writeFileSync(path.join(dist, 'index.mjs'), mjs);
fs.writeFileSync(path.join(dist, 'index.d.mts'), "export * from './index.js';\n");

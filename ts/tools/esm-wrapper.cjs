// Writes dist/<entry>.mjs and dist/<entry>.d.mts for each public entry point (the root and the
// engine subpaths `dbnorm/lancedb`, `dbnorm/usearch`): an ES-module face over the CommonJS build, so
// `import { Normalizer } from 'dbnorm'` and `require('dbnorm')` load the same single copy. Requiring
// an engine entry here loads no engine: they import `@lancedb/lancedb` / `usearch` lazily.
const fs = require('node:fs');
const path = require('node:path');
const dist = path.join(__dirname, '..', '..', 'dist');
for (const entry of ['index', 'lancedb', 'usearch']) {
  const names = Object.keys(require(path.join(dist, `${entry}.js`))).filter((n) => n !== 'default' && n !== '__esModule');
  const mjs = [
    `import cjs from './${entry}.js';`,
    ...names.map((n) => `export const ${n} = cjs.${n};`),
    'export default cjs;',
    '',
  ].join('\n');
  fs.writeFileSync(path.join(dist, `${entry}.mjs`), mjs);
  fs.writeFileSync(path.join(dist, `${entry}.d.mts`), `export * from './${entry}.js';\n`);
}

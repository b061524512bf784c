/**
 * Loads the native addon through the loader that `napi build` generates (`ts/native/index.cjs`),
 * which picks `dbnorm.<platform>.node` next to it or the per-platform package from `npm/`.
 * @internal
 * @module
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const native: typeof import('./native/index.cjs') = require('../ts/native/index.cjs');

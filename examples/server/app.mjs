// The example server's application: a fastify instance serving normalised (DualIS) top-k search
// from a LanceDB gallery. `server.mjs` runs it; the tests drive it with fastify's inject (nothing
// listens) and `load.mjs` measures it over loopback.
import { monitorEventLoopDelay } from 'node:perf_hooks';

import Fastify from 'fastify';

/** Limits every request is validated against (override with environment variables in server.mjs). */
export const DEFAULT_LIMITS = Object.freeze({ maxK: 100, maxBatch: 64, bodyLimit: 1 << 20 });

// Finite JSON numbers: JSON has no NaN/Infinity, but 1e999 parses to Infinity, so bound them.
const FINITE = 3.4e38;

/** JSON schema of POST /search for dimension `dim`: exactly one of `vector` / `vectors`, and `k`. */
export function searchSchema(dim, limits) {
  const vector = { type: 'array', minItems: dim, maxItems: dim, items: { type: 'number', minimum: -FINITE, maximum: FINITE } };
  return {
    type: 'object',
    additionalProperties: false,
    required: ['k'],
    properties: {
      k: { type: 'integer', minimum: 1, maximum: limits.maxK },
      vector,
      vectors: { type: 'array', minItems: 1, maxItems: limits.maxBatch, items: vector },
    },
    oneOf: [{ required: ['vector'] }, { required: ['vectors'] }],
  };
}

/** Our error code for a schema violation (ajv keyword → dbnorm code). */
function codeOf(v) {
  const kw = v?.[0]?.keyword;
  if (kw === 'minItems' || kw === 'maxItems' || kw === 'oneOf' || kw === 'required') return 'ERR_SHAPE';
  // A vector element that is a number but failed (Infinity from 1e999, or beyond float32): non-finite.
  if (/\/(vector|vectors\/\d+)\/\d+$/.test(v[0].instancePath) && typeof v[0].data === 'number') return 'ERR_NON_FINITE';
  return 'ERR_PARAM';
}

/**
 * Builds the app. `gallery` is a LanceGallery; `limits` bound k, the batch size and the body size.
 * GET /stats returns (and resets) the max event-loop delay seen since the last call, in ms.
 */
export function buildApp(gallery, limits = DEFAULT_LIMITS, opts = {}) {
  const dim = gallery.normalizer.dim;
  const app = Fastify({ logger: opts.logger ?? false, bodyLimit: limits.bodyLimit, ajv: { customOptions: { allErrors: false, coerceTypes: false, removeAdditional: false, useDefaults: false, verbose: true } } });
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  app.addHook('onClose', async () => loop.disable());

  app.setErrorHandler((err, _req, reply) => {
    if (err.validation) {
      return reply.code(400).send({ error: { code: codeOf(err.validation), message: `${err.validationContext ?? 'body'}${err.validation[0]?.instancePath ?? ''} ${err.validation[0]?.message ?? 'is invalid'}` } });
    }
    // A DbnormError (checked by its stable code, so any copy of the library is recognised).
    if (typeof err.code === 'string' && /^ERR_[A-Z_]+$/.test(err.code) && (err.name === 'DbnormError' || err.name === 'AbortError')) {
      const status = err.code === 'ERR_INTERNAL' || err.code === 'ERR_IO' ? 500 : 400;
      return reply.code(status).send({ error: { code: err.code, message: err.message } });
    }
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return reply.code(413).send({ error: { code: 'ERR_SHAPE', message: `body larger than ${limits.bodyLimit} bytes` } });
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
      return reply.code(err.statusCode).send({ error: { code: 'ERR_PARAM', message: err.message } });
    }
    app.log.error(err);
    return reply.code(500).send({ error: { code: 'ERR_INTERNAL', message: 'internal error' } });
  });

  app.get('/healthz', async () => ({ status: 'ok', method: gallery.normalizer.method, items: gallery.size, dim }));

  app.get('/stats', async () => {
    const out = { maxEventLoopDelayMs: loop.max / 1e6, p99EventLoopDelayMs: loop.percentile(99) / 1e6 };
    loop.reset();
    return out;
  });

  app.post('/search', { schema: { body: searchSchema(dim, limits) } }, async (req) => {
    const { k } = req.body;
    const rows = req.body.vectors ?? [req.body.vector];
    const data = new Float32Array(rows.length * dim);
    rows.forEach((r, i) => data.set(r, i * dim));
    const top = await gallery.search({ data, rows: rows.length, cols: dim }, { k });
    const results = [];
    for (let i = 0; i < top.rows; i++) {
      const n = top.counts[i];
      const at = i * top.k;
      results.push({ ids: top.ids.slice(at, at + n), scores: Array.from(top.scores.subarray(at, at + n)) });
    }
    return { k: top.k, results };
  });
  return app;
}

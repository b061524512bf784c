/**
 * dbnorm — hubness reduction for cross-modal retrieval (DBNorm: DualIS / DualDIS, and baselines),
 * a Rust-accelerated Node.js addon.
 *
 * Start with {@link Normalizer}. All matrices are row-major `float32` ({@link Matrix}); β values are
 * inverse temperatures (they multiply similarities); higher scores are better.
 *
 * @packageDocumentation
 */
export { DbnormError, type ErrorCode } from './errors.js';
export { Matrix, type MatrixLike } from './matrix.js';
export { Bank, GalleryBank, QueryBank, type BankBlock, type BankOptions, type BankSource, type BankSummary } from './bank.js';
export { type Progress, type RunOptions } from './job.js';
export { similarity, similaritySync, type Metric, type SimilarityOptions } from './similarity.js';
export {
  Normalizer,
  METHODS,
  resolveOptions,
  type AddGallerySimilarities,
  type AugmentedInfo,
  type FitData,
  type FitOptions,
  type FitSimilaritiesData,
  type GalleryStorage,
  type Method,
  type MethodOptions,
  type ResolvedOptions,
  type ShardedFitOptions,
  type StorageInfo,
  type TopK,
} from './normalizer.js';
export { METHOD_IDS } from './method-ids.js';
export { PartialNormalizer, evenSplit, type MergePart, type ShardCoverage, type ShardOptions, type ShardRange } from './shard.js';
export { type CandidateIds } from './candidates.js';
export { METHOD_INFO, PARAM_INFO, methodInfo, type MethodInfo, type ParamInfo } from './methods.js';
export { syntheticBenchmark, type SyntheticBenchmark, type SyntheticOptions } from './synthetic.js';
export {
  evaluate,
  evaluateSync,
  hubness,
  hubnessSync,
  type EvaluateOptions,
  type GroundTruth,
  type Hubness,
  type HubnessOptions,
  type RetrievalMetrics,
  type TieMode,
} from './eval.js';
export { readNpy, readNpySync, writeNpy, writeNpySync, type ReadNpyOptions } from './npy.js';
export { tune, tuneFlags, TUNED_KEYS, type TuneData, type TuneGrid, type TuneMethodResult, type TuneOptions, type TunePairs, type TuneResult, type TuneTrial, type TunedParams } from './tune.js';
export { report, type ReportInput, type ReportRow } from './report-html.js';

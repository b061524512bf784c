// Builds the example's gallery: a synthetic cross-modal set (planted hubs) normalised with DualIS
// and written into a LanceDB table (flat, or with an IVF-HNSW-SQ index).
import { Normalizer, syntheticBenchmark } from 'dbnorm';
import { LanceGallery } from 'dbnorm/lancedb';

export async function buildGallery(dir, { items = 20000, dim = 128, index = false, queryBank = 8000, galleryBank = 2000 } = {}) {
  const data = syntheticBenchmark({ seed: 7, dim, gallery: items, queryBank, galleryBank });
  const norm = await Normalizer.fit({ gallery: data.gallery, queryBank: data.queryBank, galleryBank: data.galleryBank }, { method: 'dual-is' });
  const ids = Array.from({ length: items }, (_, j) => `item-${j}`);
  const lg = await LanceGallery.create(dir, 'gallery', norm, {
    ids,
    mode: 'overwrite',
    index: index ? { type: 'ivf_hnsw_sq', numPartitions: 1, m: 16, efConstruction: 100 } : undefined,
  });
  return { gallery: lg, queries: data.queries };
}

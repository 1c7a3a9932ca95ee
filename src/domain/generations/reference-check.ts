import type { ObjectStore } from '../../storage/object-store.js';
import type { JobReference } from './job.js';

/**
 * The field of the first reference whose object is no longer the one that was
 * verified (replaced by a second PUT of its still-valid upload URL, or deleted),
 * or null when all are unchanged. One HEAD per reference, just before a runner
 * reads them, so a generation never renders bytes that were not verified.
 */
export async function firstChangedReference(store: ObjectStore, references: readonly JobReference[]): Promise<string | null> {
  for (const reference of references) {
    if (reference.etag === undefined || reference.etag === null) continue;
    const info = await store.head(reference.key);
    if (!info || info.etag !== reference.etag) return reference.field;
  }
  return null;
}

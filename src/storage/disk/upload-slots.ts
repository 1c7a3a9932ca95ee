import { StorageRefusal } from './storage-refusal.js';

export interface UploadCaps {
  /** PUTs in progress at once for one owner (user). */
  perOwner: number;
  /** PUTs in progress at once in this process. */
  total: number;
}

/**
 * Who may write to the disk store right now: at most one writer per key, and
 * caps on the PUTs in progress per owner and in total. Everything here is
 * in-process state, which is enough because the disk store is single-node:
 * one Keyframe process owns its data dir.
 *
 * `acquire` decides synchronously, so no two requests can both see a key free;
 * it refuses before the caller has read a body byte or opened a file.
 */
export class UploadSlots {
  /** Keys with a writer (a client PUT or a server `put`). */
  private readonly writers = new Set<string>();
  private readonly perOwner = new Map<string, number>();
  private total = 0;

  constructor(private readonly caps: UploadCaps) {}

  /**
   * Takes the key's one writer slot and, for a client PUT (`owner` given or
   * null for a key of nobody), one upload slot of its owner and of the server.
   * Throws 409 OperationAborted when the key has a writer, 503 SlowDown when a
   * cap is reached. The returned function gives everything back (idempotent).
   */
  acquire(key: string, upload: { owner: string | null } | null): () => void {
    if (this.writers.has(key)) throw StorageRefusal.conflictingOperation();
    const owner = upload?.owner ?? null;
    if (upload !== null) {
      if (this.total >= this.caps.total) throw StorageRefusal.slowDown();
      if (owner !== null && (this.perOwner.get(owner) ?? 0) >= this.caps.perOwner) throw StorageRefusal.slowDown();
      this.total += 1;
      if (owner !== null) this.perOwner.set(owner, (this.perOwner.get(owner) ?? 0) + 1);
    }
    this.writers.add(key);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.writers.delete(key);
      if (upload === null) return;
      this.total -= 1;
      if (owner === null) return;
      const left = (this.perOwner.get(owner) ?? 1) - 1;
      if (left === 0) this.perOwner.delete(owner);
      else this.perOwner.set(owner, left);
    };
  }

  /** PUTs in progress (for tests and diagnostics). */
  get uploadsInProgress(): number {
    return this.total;
  }
}

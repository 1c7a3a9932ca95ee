import type { FileHandle } from 'node:fs/promises';

/**
 * While a body is still arriving, its file is flushed to disk each time this
 * much more has arrived (one flush at a time). Without it the page cache held
 * the whole upload and the closing fsync wrote all of it while the client
 * waited; with it, writing to disk overlaps receiving and the closing fsync
 * finds at most a few MiB left.
 */
const EARLY_SYNC_BYTES = 8 * 1024 * 1024;

/**
 * A function to call with the number of bytes of `file` received so far: it
 * starts an fdatasync of the file each time EARLY_SYNC_BYTES more have arrived,
 * at most one at a time, and never waits for it. The caller still syncs the
 * file when the body is complete; FileHandle.close waits for a flush in flight.
 */
export function syncWhileArriving(file: FileHandle): (receivedBytes: number) => void {
  let requestedAt = 0;
  let syncing = false;
  return (receivedBytes) => {
    if (syncing || receivedBytes - requestedAt < EARLY_SYNC_BYTES) return;
    requestedAt = receivedBytes;
    syncing = true;
    // A disk that fails here fails the closing sync too, and that one is reported.
    void file
      .datasync()
      .catch(() => {})
      .finally(() => {
        syncing = false;
      });
  };
}

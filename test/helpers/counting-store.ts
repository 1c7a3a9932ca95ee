import type { Readable } from 'node:stream';
import type { DownloadHeaders, ObjectInfo, ObjectStore, PresignPutInput } from '../../src/storage/object-store.js';

type Method = 'presignPut' | 'presignGet' | 'head' | 'getRange' | 'openVerified' | 'put' | 'delete';

/**
 * A real store seen through a delegate that records every call (method and
 * arguments) before passing it on: what the code under test asked the store
 * for, with the store itself doing the work.
 */
export class CountingStore implements ObjectStore {
  readonly calls: { method: Method; args: unknown[] }[] = [];

  constructor(private readonly inner: ObjectStore) {}

  get kind(): ObjectStore['kind'] {
    return this.inner.kind;
  }

  /** Calls of `method`, or of every method when none is named. */
  count(method?: Method): number {
    return this.calls.filter((c) => method === undefined || c.method === method).length;
  }

  presignPut(input: PresignPutInput): Promise<string> {
    this.calls.push({ method: 'presignPut', args: [input] });
    return this.inner.presignPut(input);
  }

  presignGet(key: string, expiresInSeconds: number, response?: DownloadHeaders): Promise<string> {
    this.calls.push({ method: 'presignGet', args: [key, expiresInSeconds, response] });
    return this.inner.presignGet(key, expiresInSeconds, response);
  }

  head(key: string): Promise<ObjectInfo | null> {
    this.calls.push({ method: 'head', args: [key] });
    return this.inner.head(key);
  }

  getRange(key: string, start: number, end: number): Promise<Buffer | null> {
    this.calls.push({ method: 'getRange', args: [key, start, end] });
    return this.inner.getRange(key, start, end);
  }

  openVerified(key: string, etag: string): Promise<Readable | 'changed' | 'missing'> {
    this.calls.push({ method: 'openVerified', args: [key, etag] });
    return this.inner.openVerified(key, etag);
  }

  put(key: string, body: Readable, contentType: string): Promise<void> {
    this.calls.push({ method: 'put', args: [key, contentType] });
    return this.inner.put(key, body, contentType);
  }

  delete(key: string): Promise<void> {
    this.calls.push({ method: 'delete', args: [key] });
    return this.inner.delete(key);
  }
}

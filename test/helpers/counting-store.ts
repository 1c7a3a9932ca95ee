import type { Readable } from 'node:stream';
import type { MultipartStore, UploadedPart } from '../../src/storage/multipart.js';
import type { DownloadHeaders, ListedObject, ObjectInfo, ObjectStore, PresignPutInput } from '../../src/storage/object-store.js';

type Method = 'presignPut' | 'presignGet' | 'head' | 'getRange' | 'openVerified' | 'put' | 'delete' | 'list' | keyof MultipartStore;

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

  list(prefix: string): AsyncIterable<ListedObject> {
    this.calls.push({ method: 'list', args: [prefix] });
    return this.inner.list(prefix);
  }

  createMultipart(input: { key: string; contentType: string }): Promise<{ uploadId: string }> {
    this.calls.push({ method: 'createMultipart', args: [input] });
    return this.inner.createMultipart(input);
  }

  presignPart(input: Parameters<MultipartStore['presignPart']>[0]): Promise<string> {
    this.calls.push({ method: 'presignPart', args: [input] });
    return this.inner.presignPart(input);
  }

  listParts(key: string, uploadId: string): Promise<UploadedPart[] | 'missing'> {
    this.calls.push({ method: 'listParts', args: [key, uploadId] });
    return this.inner.listParts(key, uploadId);
  }

  completeMultipart(key: string, uploadId: string, parts: { partNumber: number; etag: string }[]): Promise<ObjectInfo> {
    this.calls.push({ method: 'completeMultipart', args: [key, uploadId, parts] });
    return this.inner.completeMultipart(key, uploadId, parts);
  }

  abortMultipart(key: string, uploadId: string): Promise<void> {
    this.calls.push({ method: 'abortMultipart', args: [key, uploadId] });
    return this.inner.abortMultipart(key, uploadId);
  }
}

import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { DETECTION_BYTES } from './content-type.js';
import { browserSource, slicedParts, type Payload, type UploadInput, type UploadSource } from './source.js';

/** The Node entry's inputs: the browser's, a file path, a Buffer, or a readable stream of unknown length. */
export type NodeUploadInput = UploadInput | string | Buffer | NodeJS.ReadableStream;

/** Bytes are handed to fetch in chunks of this size, so progress moves as they are sent. */
const CHUNK_BYTES = 64 * 1024;

async function* chunksOf(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  for (let start = 0; start < bytes.byteLength; start += CHUNK_BYTES) yield bytes.subarray(start, start + CHUNK_BYTES);
}

/** Bytes in memory, sent in chunks (so that progress counts them as they go). */
export function nodeBytesSource(bytes: Uint8Array): UploadSource {
  const slice = (start: number, end: number): Payload => ({ length: end - start, open: () => chunksOf(bytes.subarray(start, end)) });
  return {
    size: bytes.byteLength,
    head: bytes.subarray(0, DETECTION_BYTES),
    whole: () => slice(0, bytes.byteLength),
    parts: (partSize) => slicedParts(bytes.byteLength, partSize, slice),
  };
}

/** A file: its size from stat, each payload a read stream of its range (opened again for a retry), never the whole file in memory. */
export async function fileSource(path: string): Promise<UploadSource> {
  const { size } = await stat(path);
  const handle = await open(path, 'r');
  let head: Uint8Array;
  try {
    const buffer = new Uint8Array(Math.min(size, DETECTION_BYTES));
    const { bytesRead } = await handle.read(buffer, 0, buffer.byteLength, 0);
    head = buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
  const slice = (start: number, end: number): Payload => ({
    length: end - start,
    open: () => (end > start ? createReadStream(path, { start, end: end - 1, highWaterMark: CHUNK_BYTES }) : new Uint8Array(0)),
  });
  return { size, head, name: basename(path), whole: () => slice(0, size), parts: (partSize) => slicedParts(size, partSize, slice) };
}

/** A Blob in Node: each payload the slice's stream, so progress counts its chunks as they are sent. */
function nodeBlobSource(source: UploadSource, blob: Blob): UploadSource {
  const slice = (start: number, end: number): Payload => ({
    length: end - start,
    open: () => blob.slice(start, end).stream() as unknown as AsyncIterable<Uint8Array>,
  });
  return { ...source, whole: () => slice(0, blob.size), parts: (partSize) => slicedParts(blob.size, partSize, slice) };
}

/** Chunks read from a stream, taken out in pieces of exact sizes; what is taken is no longer held. */
class ChunkQueue {
  private chunks: Uint8Array[] = [];
  private offset = 0; // into chunks[0]
  bytes = 0;

  push(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.chunks.push(chunk);
    this.bytes += chunk.byteLength;
  }

  /** The first `n` bytes (at most what is held), copied out. */
  take(n: number): Uint8Array {
    const out = new Uint8Array(Math.min(n, this.bytes));
    let filled = 0;
    while (filled < out.byteLength) {
      const chunk = this.chunks[0]!;
      const piece = chunk.subarray(this.offset, this.offset + (out.byteLength - filled));
      out.set(piece, filled);
      filled += piece.byteLength;
      this.offset += piece.byteLength;
      if (this.offset === chunk.byteLength) {
        this.chunks.shift();
        this.offset = 0;
      }
    }
    this.bytes -= out.byteLength;
    return out;
  }
}

const asBytes = (chunk: string | Buffer | Uint8Array): Uint8Array => (typeof chunk === 'string' ? Buffer.from(chunk) : chunk);

/**
 * A stream of unknown length: read into memory up to `threshold` bytes. If it ends first it is
 * bytes like any other (a single PUT); otherwise it becomes a source of unknown size whose parts
 * are read one at a time as the multipart upload pulls them, so memory stays bounded by the
 * threshold plus the parts in flight.
 */
export async function streamSource(stream: NodeJS.ReadableStream, threshold: number): Promise<UploadSource> {
  const reader = (stream as AsyncIterable<string | Buffer>)[Symbol.asyncIterator]();
  const queue = new ChunkQueue();
  const destroy = () => (stream as { destroy?: (error?: Error) => void }).destroy?.();
  let ended = false;
  try {
    while (queue.bytes < Math.max(threshold, DETECTION_BYTES)) {
      const next = await reader.next();
      if (next.done) {
        ended = true;
        break;
      }
      queue.push(asBytes(next.value));
    }
  } catch (err) {
    destroy();
    throw err;
  }
  if (ended && queue.bytes < threshold) return nodeBytesSource(queue.take(queue.bytes));

  // The head is taken out for detection and kept in front: it is the start of the first part.
  const head = queue.take(Math.min(queue.bytes, DETECTION_BYTES));
  const start = new ChunkQueue();
  start.push(head);
  const rest = queue;
  const parts = async function* (partSize: number): AsyncIterable<Payload> {
    for (;;) {
      while (start.bytes + rest.bytes < partSize && !ended) {
        const next = await reader.next();
        if (next.done) ended = true;
        else rest.push(asBytes(next.value));
      }
      if (start.bytes + rest.bytes === 0) return;
      const fromHead = start.take(Math.min(start.bytes, partSize));
      const part = new Uint8Array(Math.min(partSize, fromHead.byteLength + rest.bytes));
      part.set(fromHead, 0);
      part.set(rest.take(part.byteLength - fromHead.byteLength), fromHead.byteLength);
      yield { length: part.byteLength, open: () => chunksOf(part) };
    }
  };
  return {
    size: null,
    head,
    whole: () => {
      throw new Error('a stream of unknown length goes up in parts');
    },
    parts,
    close: destroy,
  };
}

const isStream = (input: unknown): input is NodeJS.ReadableStream =>
  typeof input === 'object' && input !== null && typeof (input as { pipe?: unknown }).pipe === 'function' && Symbol.asyncIterator in input;

export async function nodeSource(input: NodeUploadInput, threshold: number): Promise<UploadSource> {
  if (typeof input === 'string') return fileSource(input);
  if (input instanceof Uint8Array) return nodeBytesSource(input);
  if (input instanceof ArrayBuffer) return nodeBytesSource(new Uint8Array(input));
  if (isStream(input)) return streamSource(input, threshold);
  if (input instanceof Blob) return nodeBlobSource(await browserSource(input), input);
  throw new TypeError('uploadReference: the input must be a file path, a Buffer, a readable stream, a Blob, an ArrayBuffer or a Uint8Array');
}

import { DETECTION_BYTES } from './content-type.js';

/** What one PUT sends: a Blob or bytes (a browser can send these), or chunks (Node streams them, counting progress). */
export type PayloadData = Blob | Uint8Array | AsyncIterable<Uint8Array>;

export interface Payload {
  readonly length: number;
  /** The bytes for one attempt; called again for a retry, so a stream is opened afresh. */
  open(): PayloadData;
}

/** The bytes of one upload, as the single PUT and the multipart driver read them. */
export interface UploadSource {
  /** The exact size, or null for a stream of unknown length (which only multipart can send). */
  readonly size: number | null;
  /** Up to the first DETECTION_BYTES bytes, for type detection. */
  readonly head: Uint8Array;
  /** The whole file as one payload (only when the size is known). */
  whole(): Payload;
  /** Consecutive parts of `partSize` bytes, the last one the rest; pulled one at a time, so only the parts in flight are held. */
  parts(partSize: number): AsyncIterable<Payload>;
  /** Releases what the source holds open (a stream) when the upload ends early. */
  close?(): void;
  /** The file's own name (a File's, a path's last segment), sent for bookkeeping when the caller names none. */
  readonly name?: string;
}

/** The parts of a source of known size, each a slice made when it is pulled. */
export async function* slicedParts(size: number, partSize: number, slice: (start: number, end: number) => Payload): AsyncIterable<Payload> {
  for (let start = 0; start < size; start += partSize) yield slice(start, Math.min(size, start + partSize));
}

export function bytesSource(bytes: Uint8Array): UploadSource {
  const slice = (start: number, end: number): Payload => ({ length: end - start, open: () => bytes.subarray(start, end) });
  return {
    size: bytes.byteLength,
    head: bytes.subarray(0, DETECTION_BYTES),
    whole: () => slice(0, bytes.byteLength),
    parts: (partSize) => slicedParts(bytes.byteLength, partSize, slice),
  };
}

/** A Blob (a File) is read part by part as the parts are sent: never whole in memory. */
export async function blobSource(blob: Blob): Promise<UploadSource> {
  const slice = (start: number, end: number): Payload => ({ length: end - start, open: () => blob.slice(start, end) });
  return {
    size: blob.size,
    head: new Uint8Array(await blob.slice(0, DETECTION_BYTES).arrayBuffer()),
    whole: () => slice(0, blob.size),
    parts: (partSize) => slicedParts(blob.size, partSize, slice),
  };
}

/** The browser entry's inputs. */
export type UploadInput = Blob | ArrayBuffer | Uint8Array;

export async function browserSource(input: UploadInput): Promise<UploadSource> {
  if (input instanceof Uint8Array) return bytesSource(input);
  if (input instanceof ArrayBuffer) return bytesSource(new Uint8Array(input));
  if (typeof Blob !== 'undefined' && input instanceof Blob) {
    const source = await blobSource(input);
    const name = (input as Partial<File>).name;
    return typeof name === 'string' && name !== '' ? { ...source, name } : source;
  }
  throw new TypeError('uploadReference: the input must be a Blob (a File), an ArrayBuffer or a Uint8Array');
}

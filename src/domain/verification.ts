import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileTypeFromBuffer } from 'file-type';
import type { MediaInfo, UploadState, UploadStatusResponse } from '../contract/uploads.js';
import type { Db } from '../db/database.js';
import type { UploadsTable } from '../db/schema.js';
import { copyVerifiedToFile } from '../storage/local-copy.js';
import type { ObjectStore } from '../storage/object-store.js';
import { ID3_CAPABLE_TYPES, MAX_ID3_TAGS, readId3Header } from './inspection/id3.js';
import { DIMENSION_BYTES, imageDimensionsProblem, readImageDimensions, type ImageDimensions } from './inspection/image-dimensions.js';
import { findMarkupMarker, findPlaylistMarker } from './inspection/polyglot.js';
import { ProbeFailure, type MediaProbe, type ProbeResult } from './media-probe.js';
import { lookupMediaType, MEDIA_LIMITS, normaliseContentType, type MediaFamily, type MediaType } from './media-types.js';
import { MULTIPART_EXPIRED_REASON } from './multipart-uploads.js';
import { findOwnedUpload } from './uploads.js';
import { NO_TELEMETRY, type Telemetry } from './telemetry.js';
import { findTruncation } from './truncation.js';
import { deleteAfter } from './lifecycle/delete-after.js';
import type { RetentionPolicy } from './lifecycle/policy.js';

/**
 * Where an upload stands. A pending upload whose URL has expired with no object behind
 * it is answered `expired` at once, but stored so only by the cleanup job once a grace
 * has passed (docs/lifecycle.md), because on S3 a PUT that began before the expiry may
 * still complete after it. `uploading` is not stored: it is a pending multipart upload
 * (src/domain/multipart-uploads.ts) within its lifetime, whose object exists only once
 * the server completes it. A `deleting` record is answered `deleted`.
 */
export type { UploadState, MediaInfo };

/**
 * What every consumer of an upload (generations, the status endpoint) learns about it: the
 * status endpoint's body (src/contract/uploads.ts), which answers only the contract's fields,
 * and what the server alone needs.
 */
export type UploadStatus = UploadStatusResponse & {
  family: MediaFamily;
  /** Hex SHA-256 of the bytes, where the store knows it. */
  sha256: string | null;
  /** ETag of the object as verified: a consumer compares it to notice a replaced object. */
  etag: string | null;
};

/** Where the Verifier keeps its private copies, and what probes them. */
export interface VerifierOptions {
  /** A directory of the server's own (created 0700): each object is copied there, probed and removed. */
  scratchDir: string;
  probe: MediaProbe;
  /** Probes (and copies) at once; more wait their turn. Default: the machine's parallelism, at least 2. */
  maxConcurrentProbes?: number;
  /** The retention policy, which the status answers as `delete_after` (docs/lifecycle.md); none: always null. */
  retention?: RetentionPolicy;
}

/**
 * Bytes read from where an object's stream starts (byte 0, or the end of its
 * ID3 tags) for the magic-byte, marker and header checks: enough for every
 * signature `file-type` knows and for the headers `findTruncation` reads, and
 * small enough that checking a 200 MB video costs one small ranged GET.
 */
export const SNIFF_BYTES = 64 * 1024;

/** The longest a copy of one object into the scratch directory may take (200 MB from a slow store). */
const COPY_TIMEOUT_MS = 5 * 60_000;

type UploadRecord = UploadsTable;

/** A verdict on the object as stored now; `inconclusive` when it changed or vanished while being read. */
type Verdict =
  | { outcome: 'verified'; size: number; sniffedType: string; sha256: string | null; etag: string | null; media: MediaInfo }
  | { outcome: 'rejected'; reason: string; size: number; sniffedType: string | null }
  | { outcome: 'missing' }
  | { outcome: 'inconclusive' };

/**
 * The one verification of an upload, used by every consumer: the object exists,
 * is within its size limit (and the exact length signed, if any), was stored with
 * the declared Content-Type; where its media stream really starts (after any ID3
 * tags, which only MP3 and AAC may carry) its bytes are the declared type, do not
 * contradict its size, hold no playlist (and, in an image, no HTML); an image's
 * header declares dimensions within MEDIA_LIMITS; and a private copy pinned to the
 * ETag seen decodes under ffprobe to what the type promises, within MEDIA_LIMITS.
 * The verdict is recorded on the upload and remembered: a verified or rejected
 * upload is answered from the database alone. A rejected object is deleted, so
 * nothing can ever serve it.
 */
export class Verifier {
  private readonly scratchDir: string;
  private readonly probe: MediaProbe;
  private scratchReady: Promise<void> | null = null;
  private readonly probeSlots: Semaphore;
  private readonly retention: RetentionPolicy | null;
  /** Counts verdicts, their time and the bytes verified (src/domain/telemetry.ts). */
  private readonly telemetry: Telemetry;

  constructor(
    private readonly db: Db,
    private readonly store: ObjectStore,
    options: VerifierOptions & { telemetry?: Telemetry },
  ) {
    this.telemetry = options.telemetry ?? NO_TELEMETRY;
    this.scratchDir = options.scratchDir;
    this.probe = options.probe;
    this.probeSlots = new Semaphore(options.maxConcurrentProbes ?? Math.max(2, os.availableParallelism()));
    this.retention = options.retention ?? null;
  }

  /** Status of the caller's upload, verifying it on the way when its object has arrived; null when the key is missing or belongs to another user (indistinguishable). */
  async status(userId: string, key: string): Promise<UploadStatus | null> {
    const record = await findOwnedUpload(this.db, userId, key);
    if (!record) return null;
    const status = await this.currentStatus(record);
    if (status !== null && this.retention !== null && (status.state === 'uploaded' || status.state === 'verified')) {
      // Just verified: retained as verified; answered `uploaded` while still pending (inconclusive): not yet.
      const state = status.state === 'verified' ? 'verified' : record.state;
      status.delete_after = await deleteAfter(this.db, this.retention, { ...record, state });
    }
    return status;
  }

  /** Where the record stands, verifying its object when it has arrived (`delete_after` left null). */
  private async currentStatus(record: UploadRecord): Promise<UploadStatus | null> {
    // Verdicts and the lifecycle's states (expired, deleting, deleted) are answered from the record alone.
    if (record.state !== 'pending' && record.state !== 'uploaded') return toStatus(record);
    // A multipart upload has no object until the server completes it (and then it is `uploaded`).
    if (record.state === 'pending' && record.multipart_upload_id !== null) {
      return toStatus(record, new Date() >= new Date(record.expires_at) ? 'expired' : 'uploading');
    }

    const started = performance.now();
    const verdict = await this.judge(record);
    const seconds = (performance.now() - started) / 1000;
    switch (verdict.outcome) {
      case 'missing':
        return toStatus({ ...record, size: null, sha256: null }, new Date() >= new Date(record.expires_at) ? 'expired' : 'pending');
      case 'inconclusive':
        return toStatus(record, 'uploaded');
      case 'rejected':
        // Deleted before it is recorded: if recording fails, the next call finds no object and says pending.
        await this.store.delete(record.s3_key);
        return this.record(record, { state: 'rejected', reason: verdict.reason, size: verdict.size, sniffed_type: verdict.sniffedType, sha256: null, ...mediaColumns(null) }, seconds);
      case 'verified':
        return this.record(record, {
          state: 'verified',
          reason: null,
          size: verdict.size,
          sniffed_type: verdict.sniffedType,
          sha256: verdict.sha256,
          etag: verdict.etag,
          uploaded_at: record.uploaded_at ?? new Date().toISOString(),
          ...mediaColumns(verdict.media),
        }, seconds);
    }
  }

  /**
   * Inspects the stored object: one HEAD; a ranged GET of its first bytes (and,
   * only where they do not hold what is judged, one more at the end of each ID3
   * tag and one for a JPEG's dimensions); then a probe of a private copy.
   */
  private async judge(record: UploadRecord): Promise<Verdict> {
    const info = await this.store.head(record.s3_key);
    if (!info) return { outcome: 'missing' };
    const { size } = info;
    const reject = (reason: string, sniffedType: string | null = null): Verdict => ({ outcome: 'rejected', reason, size, sniffedType });

    if (size === 0) return reject('the uploaded object is empty');
    // Bigint columns may come back as strings from other SQL drivers: compare numbers.
    const maxBytes = Number(record.max_bytes);
    const contentLength = record.content_length === null ? null : Number(record.content_length);
    if (size > maxBytes) return reject(`the object is ${size} bytes, over the ${maxBytes}-byte limit`);
    if (contentLength !== null && size !== contentLength) {
      return reject(`the object is ${size} bytes, not the ${contentLength} bytes declared`);
    }
    const storedType = info.contentType === null ? null : normaliseContentType(info.contentType);
    if (storedType !== record.content_type) {
      return reject(`the object was stored as ${storedType ?? 'no content type'}, not the declared ${record.content_type}`);
    }
    const media = lookupMediaType(record.content_type);
    if (!media) return reject(`${record.content_type} is no longer an allowed content type`);
    const declared = record.content_type;

    // A window: the object's bytes from `start`, SNIFF_BYTES of them (fewer at its end).
    const readAt = async (start: number, length: number): Promise<Buffer | 'missing' | 'inconclusive'> => {
      const wanted = Math.min(length, size - start);
      const bytes = await this.store.getRange(record.s3_key, start, start + wanted - 1);
      if (!bytes) return 'missing';
      // Fewer bytes than HEAD promised: the object was replaced mid-check; judge it on a later call.
      return bytes.length < wanted ? 'inconclusive' : bytes;
    };
    const head = await readAt(0, SNIFF_BYTES);
    if (typeof head === 'string') return { outcome: head };
    /** Every window read from the store, each scanned for markers once. */
    const windows: { offset: number; bytes: Buffer }[] = [{ offset: 0, bytes: head }];

    // A playlist or concat list anywhere is refused before anything else: that is what a prober would follow.
    const playlistIn = (bytes: Buffer, offset: number) => {
      const marker = findPlaylistMarker(bytes, offset);
      return marker && reject(`the file contains ${marker.name} at byte ${marker.offset}`);
    };
    const headPlaylist = playlistIn(head, 0);
    if (headPlaylist) return headPlaylist;

    // Then the declared type, so a misdeclared file is told so. file-type skips an ID3 tag itself,
    // but calls anything whose tag outlasts the window audio/mpeg: behind a tag, the type is
    // judged where the tags end (ID3-capable types), or the tag is the reason (all others).
    const headTag = readId3Header(head, 0);
    const sniffHead = headTag.kind === 'none' || (!ID3_CAPABLE_TYPES.has(declared) && headTag.kind === 'tag' && headTag.end < head.length);
    let sniffedHead: string | null = null;
    if (sniffHead) {
      const sniffed = await fileTypeFromBuffer(head);
      if (!sniffed) return reject(`the content is not a recognised ${media.family} format (declared ${declared})`);
      if (!media.sniffedAs.includes(sniffed.mime)) return reject(`the content is ${sniffed.mime}, not the declared ${declared}`, sniffed.mime);
      sniffedHead = sniffed.mime;
    }

    // ID3 tags, parsed rather than skipped: the stream starts where the last one ends.
    let start = 0;
    let window = head;
    let windowStart = 0;
    for (let tags = 0; ; tags++) {
      const tag = readId3Header(window.subarray(start - windowStart), start);
      if (tag.kind === 'none') break;
      if (!ID3_CAPABLE_TYPES.has(declared)) {
        return reject(`an ID3 tag precedes the ${declared} data: only ${[...ID3_CAPABLE_TYPES].join(' and ')} files may start with one`, sniffedHead);
      }
      if (tag.kind === 'malformed') return reject(tag.reason, sniffedHead);
      if (tags === MAX_ID3_TAGS) return reject(`more than ${MAX_ID3_TAGS} ID3 tags in a row precede the audio`, sniffedHead);
      if (tag.end > size) return reject(`the ID3 tag at byte ${start} runs to byte ${tag.end}, past the end of the ${size}-byte object`, sniffedHead);
      if (tag.end === size) return reject(`nothing follows the ID3 tag: the object holds no ${declared} data`, sniffedHead);
      start = tag.end;
      // The window judged is SNIFF_BYTES from the stream start: from bytes already read when they hold it, else one more range.
      const wanted = Math.min(SNIFF_BYTES, size - start);
      if (start + wanted > windowStart + window.length) {
        const next = await readAt(start, SNIFF_BYTES);
        if (typeof next === 'string') return { outcome: next };
        windows.push({ offset: start, bytes: next });
        window = next;
        windowStart = start;
      }
    }
    const stream = window.subarray(start - windowStart, start - windowStart + Math.min(SNIFF_BYTES, size - start));

    for (const { offset, bytes } of windows.slice(1)) {
      const playlist = playlistIn(bytes, offset);
      if (playlist) return playlist;
    }

    // Where the stream really starts, the bytes must still be the declared type.
    const sniffed = start === 0 ? { mime: sniffedHead! } : await fileTypeFromBuffer(stream);
    if (!sniffed) return reject(`the content after the ID3 tags (byte ${start}) is not a recognised ${media.family} format (declared ${declared})`);
    if (!media.sniffedAs.includes(sniffed.mime)) {
      return reject(`the content after the ID3 tags (byte ${start}) is ${sniffed.mime}, not the declared ${declared}`, sniffed.mime);
    }

    if (media.family === 'image') {
      for (const { offset, bytes } of windows) {
        const markup = findMarkupMarker(bytes, offset);
        if (markup) return reject(`the image contains ${markup.name} at byte ${markup.offset}: an HTML polyglot`, sniffed.mime);
      }
    }
    const truncation = findTruncation(stream, size, start);
    if (truncation) return reject(`the ${declared} file is incomplete (${truncation})`, sniffed.mime);

    let dimensions: ImageDimensions | null = null;
    if (media.family === 'image') {
      dimensions = readImageDimensions(stream);
      // A JPEG's SOF may sit behind large EXIF/ICC segments: one more read, bounded.
      if (!dimensions && stream.length < size - start) {
        const more = await readAt(start, DIMENSION_BYTES);
        if (typeof more === 'string') return { outcome: more };
        dimensions = readImageDimensions(more);
      }
      if (!dimensions) return reject(`the ${declared} header states no dimensions within its first ${DIMENSION_BYTES / 1024} KiB`, sniffed.mime);
      const tooLarge = imageDimensionsProblem(dimensions);
      if (tooLarge) return reject(tooLarge, sniffed.mime);
    }

    if (info.etag === null) throw new Error(`the ${this.store.kind} store gave no ETag for ${record.s3_key}: a copy cannot be pinned to the bytes judged`);
    const probed = await this.probeCopy(record.s3_key, info.etag, size, media);
    if (probed === 'missing' || probed === 'inconclusive') return { outcome: probed };
    if (typeof probed === 'string') return reject(`the ${declared} file ${probed}`, sniffed.mime);
    const judged = judgeProbe(media, probed, dimensions);
    if (typeof judged === 'string') return reject(judged, sniffed.mime);
    return { outcome: 'verified', size, sniffedType: sniffed.mime, sha256: info.sha256, etag: info.etag, media: judged };
  }

  /**
   * Copies the object, pinned to `etag`, into a private scratch file, probes it
   * and removes it. `missing` / `inconclusive` when the object vanished or
   * changed since HEAD; a string (a reason) when the prober could not finish.
   */
  private async probeCopy(key: string, etag: string, size: number, media: MediaType): Promise<ProbeResult | 'missing' | 'inconclusive' | string> {
    await (this.scratchReady ??= prepareScratch(this.scratchDir));
    const release = await this.probeSlots.acquire();
    const file = path.join(this.scratchDir, `${randomBytes(12).toString('hex')}.${media.extension}`);
    try {
      const copied = await copyVerifiedToFile(this.store, key, etag, file, { maxBytes: size, signal: AbortSignal.timeout(COPY_TIMEOUT_MS) });
      if (copied === 'missing') return 'missing';
      // Replaced since HEAD (or grown past what HEAD said): judged again on a later call.
      if (copied !== null) return 'inconclusive';
      try {
        return await this.probe.probe(file, media, { signal: new AbortController().signal, cwd: this.scratchDir });
      } catch (err) {
        if (err instanceof ProbeFailure) return err.reason;
        throw err;
      }
    } finally {
      release();
      await fs.promises.rm(file, { force: true });
    }
  }

  /**
   * Stores a verdict, unless the upload changed since it was read (a new PUT of
   * the same URL resets it to `uploaded`): then the newer record is answered and
   * judged on a later call, never overwritten with a verdict on older bytes.
   */
  private async record(before: UploadRecord, changes: Partial<UploadRecord>, seconds: number): Promise<UploadStatus | null> {
    const now = new Date().toISOString();
    const result = await this.db
      .updateTable('uploads')
      .set({ ...changes, verified_at: now })
      .where('s3_key', '=', before.s3_key)
      .where('state', '=', before.state)
      .where('uploaded_at', before.uploaded_at === null ? 'is' : '=', before.uploaded_at)
      .executeTakeFirst();
    if (result.numUpdatedRows === 1n) {
      // Counted once, by the call whose verdict was recorded: a verdict on bytes replaced since is not one.
      this.countVerdict(before, changes, seconds);
      return toStatus({ ...before, ...changes, verified_at: now });
    }
    const current = await this.db.selectFrom('uploads').selectAll().where('s3_key', '=', before.s3_key).executeTakeFirst();
    return current ? toStatus(current) : null;
  }

  private countVerdict(before: UploadRecord, changes: Partial<UploadRecord>, seconds: number): void {
    const state = changes.state;
    if (state !== 'verified' && state !== 'rejected') return;
    const family = familyOf(before.content_type);
    this.telemetry.verificationFinished(state, seconds);
    this.telemetry.uploadSettled(state, family);
    if (state === 'verified') this.telemetry.bytesIngested(Number(changes.size ?? 0), family);
  }
}

/**
 * The state a record is answered as: a `deleting` one is already `deleted` (its object may be
 * gone); a multipart upload stored `rejected` with MULTIPART_EXPIRED_REASON (before migration
 * 011 stored `expired`) is what it was: expired.
 */
function answeredState(record: UploadRecord): UploadState {
  if (record.state === 'deleting') return 'deleted';
  if (record.state === 'rejected' && record.multipart_upload_id !== null && record.reason === MULTIPART_EXPIRED_REASON) return 'expired';
  return record.state;
}

function toStatus(record: UploadRecord, state: UploadState = answeredState(record)): UploadStatus {
  const status: UploadStatus = {
    s3_key: record.s3_key,
    state,
    content_type: record.content_type,
    family: familyOf(record.content_type),
    size: record.size === null ? null : Number(record.size),
    max_bytes: Number(record.max_bytes),
    sniffed_type: record.sniffed_type,
    sha256: record.sha256,
    etag: record.etag,
    media: state === 'verified' ? mediaOf(record) : null,
    expires_at: state === 'pending' || state === 'uploading' ? new Date(record.expires_at).toISOString() : null,
    delete_after: null,
  };
  if (state === 'rejected' && record.reason !== null) status.reason = record.reason;
  return status;
}

/** The media columns of a verified record; null when it holds none (verified before they existed). */
function mediaOf(record: UploadRecord): MediaInfo | null {
  const media: MediaInfo = {
    width: record.media_width === null ? null : Number(record.media_width),
    height: record.media_height === null ? null : Number(record.media_height),
    duration_seconds: record.media_duration_seconds === null ? null : Number(record.media_duration_seconds),
    video_codec: record.media_video_codec,
    audio_codec: record.media_audio_codec,
  };
  return Object.values(media).every((v) => v === null) ? null : media;
}

function mediaColumns(media: MediaInfo | null): Pick<UploadRecord, 'media_width' | 'media_height' | 'media_duration_seconds' | 'media_video_codec' | 'media_audio_codec'> {
  return {
    media_width: media?.width ?? null,
    media_height: media?.height ?? null,
    media_duration_seconds: media?.duration_seconds ?? null,
    media_video_codec: media?.video_codec ?? null,
    media_audio_codec: media?.audio_codec ?? null,
  };
}

/**
 * What a probe must show for the declared family, as a reason when it does not:
 * an image is one video stream whose first frame decodes at the header's
 * dimensions; a video has a video stream that decodes, within MEDIA_LIMITS.video
 * in frame size and duration; an audio file has an audio stream that decodes,
 * within MEDIA_LIMITS.audio in duration. Otherwise the metadata to record.
 */
export function judgeProbe(media: Pick<MediaType, 'family' | 'contentType'>, probe: ProbeResult, header: ImageDimensions | null): MediaInfo | string {
  const video = probe.streams.filter((s) => s.kind === 'video');
  const audio = probe.streams.filter((s) => s.kind === 'audio');
  switch (media.family) {
    case 'image': {
      if (video.length !== 1) return `the ${media.contentType} file holds ${video.length} image streams, not one`;
      const image = video[0]!;
      if (image.framesDecoded < 1) return 'the image data could not be decoded';
      if (header && (image.width !== header.width || image.height !== header.height)) {
        return `the image decodes at ${image.width ?? '?'}×${image.height ?? '?'} pixels, not the ${header.width}×${header.height} its header states`;
      }
      return { width: image.width, height: image.height, duration_seconds: null, video_codec: image.codec, audio_codec: null };
    }
    case 'video': {
      if (video.length === 0) return `the ${media.contentType} file holds no video stream`;
      const { maxSide, maxPixels, maxDurationSeconds } = MEDIA_LIMITS.video;
      for (const stream of video) {
        if (stream.width === null || stream.height === null) return 'a video stream states no frame size';
        if (stream.width > maxSide || stream.height > maxSide || stream.width * stream.height > maxPixels) {
          return `the video is ${stream.width}×${stream.height} pixels, over the limit of ${maxSide} pixels a side and ${maxPixels} pixels a frame`;
        }
      }
      const decoded = video.find((s) => s.framesDecoded > 0);
      if (!decoded) return 'the video data could not be decoded';
      const duration = durationProblem('video', probe.durationSeconds, maxDurationSeconds);
      if (duration) return duration;
      return {
        width: decoded.width,
        height: decoded.height,
        duration_seconds: probe.durationSeconds,
        video_codec: decoded.codec,
        audio_codec: audio[0]?.codec ?? null,
      };
    }
    case 'audio': {
      // A video stream in an audio file is cover art (an MP3's ID3 picture): not judged, not rendered.
      if (audio.length === 0) return `the ${media.contentType} file holds no audio stream`;
      const decoded = audio.find((s) => s.framesDecoded > 0);
      if (!decoded) return 'the audio data could not be decoded';
      const duration = durationProblem('audio', probe.durationSeconds, MEDIA_LIMITS.audio.maxDurationSeconds);
      if (duration) return duration;
      return { width: null, height: null, duration_seconds: probe.durationSeconds, video_codec: null, audio_codec: decoded.codec };
    }
  }
}

/**
 * A duration the container does not state is accepted (recorded as null): browsers'
 * MediaRecorder writes WebM without one, and a renderer reads only the seconds a job
 * asks for, so the size limit and the render limits bound such a file anyway.
 */
function durationProblem(family: 'video' | 'audio', seconds: number | null, max: number): string | null {
  if (seconds === null) return null;
  if (seconds > max) return `the ${family} is ${Math.round(seconds * 10) / 10} s long, over the ${max} s limit`;
  return null;
}

/**
 * Creates the scratch directory, private to the server (0700 whatever the
 * umask), and removes copies a crash left behind (older than an hour: a copy
 * lives for one probe, seconds).
 */
async function prepareScratch(dir: string): Promise<void> {
  await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
  await fs.promises.chmod(dir, 0o700);
  const cutoff = Date.now() - 3600_000;
  for (const name of await fs.promises.readdir(dir)) {
    const file = path.join(dir, name);
    const stat = await fs.promises.stat(file).catch(() => null);
    if (stat?.isFile() && stat.mtimeMs < cutoff) await fs.promises.rm(file, { force: true });
  }
}

/** At most `slots` holders at once; the rest wait in order. */
class Semaphore {
  private readonly waiting: (() => void)[] = [];

  constructor(private slots: number) {}

  async acquire(): Promise<() => void> {
    if (this.slots > 0) this.slots--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.slots++;
    };
  }
}

/** The family of a declared type: from the table, or from its top-level type if the table has since dropped it. */
function familyOf(contentType: string): MediaFamily {
  const media = lookupMediaType(contentType);
  if (media) return media.family;
  const topLevel = contentType.split('/', 1)[0];
  return topLevel === 'video' || topLevel === 'audio' ? topLevel : 'image';
}

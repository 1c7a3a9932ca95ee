import { Type, type Static } from '@sinclair/typebox';

/** Presign's body, as Prism documents it plus our `contentLength`. */
export const PresignRequest = Type.Object(
  {
    kind: Type.String({ description: 'Must be `upload`: a generic image, video or audio reference', maxLength: 64 }),
    contentType: Type.String({ description: 'MIME type of the file, e.g. image/png, video/mp4, audio/mpeg', maxLength: 255 }),
    fileName: Type.Optional(Type.String({ description: 'Original file name; bookkeeping only', maxLength: 255 })),
    contentLength: Type.Optional(
      Type.Integer({ description: 'Ours: exact size in bytes; the upload URL then accepts only that length', minimum: 1 }),
    ),
  },
  // Unknown fields are ignored, so clients of a newer Prism keep working.
  { additionalProperties: true },
);
export type PresignRequest = Static<typeof PresignRequest>;

/** Prism's answer to a presign, field for field. */
export const PresignResponse = Type.Object({
  s3_key: Type.String({ description: 'The key a generation names the reference by' }),
  upload_url: Type.String({ description: 'PUT the bytes here, with the same Content-Type' }),
  content_type: Type.String(),
  max_bytes: Type.Integer({ description: 'The most bytes the upload may have' }),
}, { $id: 'PresignResponse' });
export type PresignResponse = Static<typeof PresignResponse>;

/**
 * Where an upload stands. pending: nothing stored yet; uploading: a multipart upload is open,
 * parts arriving; uploaded: stored, not yet checked; verified / rejected: checked; expired: the
 * upload URL expired unused; deleted: its object was removed by the retention policy (or found
 * missing), the record kept (docs/lifecycle.md).
 */
export const UPLOAD_STATES = ['pending', 'uploading', 'uploaded', 'verified', 'rejected', 'expired', 'deleted'] as const;
export const UploadState = Type.Union(
  UPLOAD_STATES.map((s) => Type.Literal(s)),
  {
    description:
      'pending: nothing stored yet; uploading: a multipart upload is open, parts arriving; uploaded: stored, not yet checked; verified / rejected: checked; expired: the upload URL expired unused; deleted: the object was removed by the retention policy (or found missing), the record kept',
  },
);
export type UploadState = (typeof UPLOAD_STATES)[number];

/** Media metadata learnt at verification. */
export const MediaInfo = Type.Object({
  width: Type.Union([Type.Integer(), Type.Null()], { description: 'Pixels across (an image, or the first video stream); null for audio' }),
  height: Type.Union([Type.Integer(), Type.Null()], { description: 'Pixels down; null for audio' }),
  duration_seconds: Type.Union([Type.Number(), Type.Null()], { description: 'Seconds of video or audio; null for images' }),
  video_codec: Type.Union([Type.String(), Type.Null()], { description: 'ffprobe codec name of the image or video stream (png, mjpeg, h264, vp8, …)' }),
  audio_codec: Type.Union([Type.String(), Type.Null()], { description: 'ffprobe codec name of the audio stream (mp3, aac, opus, …)' }),
}, { $id: 'MediaInfo' });
export type MediaInfo = Static<typeof MediaInfo>;

export const UploadStatusQuery = Type.Object(
  { key: Type.String({ description: 'The `s3_key` a presign returned', minLength: 1, maxLength: 1024 }) },
  { additionalProperties: true },
);
export type UploadStatusQuery = Static<typeof UploadStatusQuery>;

/** Ours: where one of the caller's uploads stands. */
export const UploadStatusResponse = Type.Object({
  s3_key: Type.String(),
  state: UploadState,
  content_type: Type.String({ description: 'The content type declared at presign time' }),
  size: Type.Union([Type.Integer(), Type.Null()], { description: 'Bytes stored, once known' }),
  max_bytes: Type.Integer(),
  reason: Type.Optional(Type.String({ description: 'Why the upload was rejected' })),
  sniffed_type: Type.Union([Type.String(), Type.Null()], { description: 'Ours: the type the first bytes were recognised as' }),
  media: Type.Union([MediaInfo, Type.Null()], { description: 'Ours: what verification found the media decodes to; null until verified' }),
  expires_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
    description: 'Ours: when the upload URL (pending) or the multipart upload (uploading) expires; null in every other state',
  }),
  delete_after: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
    description:
      'Ours: from when the retention policy removes the object (the next cleanup run after it); null when none applies: not stored, in use by a queued or running generation, or kept forever',
  }),
}, { $id: 'UploadStatus' });
export type UploadStatusResponse = Static<typeof UploadStatusResponse>;

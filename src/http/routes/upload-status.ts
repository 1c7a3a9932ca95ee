import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { DEFAULT_SCOPE, type ApiKeys } from '../../domain/api-keys.js';
import { notFound } from '../../domain/errors.js';
import type { Verifier } from '../../domain/verification.js';
import { principalOf, requireScope } from '../auth.js';
import { ErrorSchema, errorResponses } from '../schemas.js';

const StatusQuery = Type.Object(
  { key: Type.String({ description: 'The `s3_key` a presign returned', minLength: 1, maxLength: 1024 }) },
  { additionalProperties: true },
);

const StatusResponse = Type.Object({
  s3_key: Type.String(),
  state: Type.Union(['pending', 'uploading', 'uploaded', 'verified', 'rejected', 'expired'].map((s) => Type.Literal(s)), {
    description: 'pending: nothing stored yet; uploading: a multipart upload is open, parts arriving; uploaded: stored, not yet checked; verified / rejected: checked; expired: the upload URL expired unused',
  }),
  content_type: Type.String(),
  size: Type.Union([Type.Integer(), Type.Null()], { description: 'Bytes stored, once known' }),
  max_bytes: Type.Integer(),
  reason: Type.Optional(Type.String({ description: 'Why the upload was rejected' })),
  sniffed_type: Type.Union([Type.String(), Type.Null()], { description: 'Ours: the type the first bytes were recognised as' }),
  media: Type.Union(
    [
      Type.Object({
        width: Type.Union([Type.Integer(), Type.Null()], { description: 'Pixels across (an image, or the first video stream); null for audio' }),
        height: Type.Union([Type.Integer(), Type.Null()], { description: 'Pixels down; null for audio' }),
        duration_seconds: Type.Union([Type.Number(), Type.Null()], { description: 'Seconds of video or audio; null for images' }),
        video_codec: Type.Union([Type.String(), Type.Null()], { description: 'ffprobe codec name of the image or video stream (png, mjpeg, h264, vp8, …)' }),
        audio_codec: Type.Union([Type.String(), Type.Null()], { description: 'ffprobe codec name of the audio stream (mp3, aac, opus, …)' }),
      }),
      Type.Null(),
    ],
    { description: 'Ours: what verification found the media decodes to; null until verified' },
  ),
});

/** Ours: where one of the caller's uploads stands, verifying it when its object has arrived. */
export const uploadStatusRoutes: FastifyPluginAsyncTypebox<{ apiKeys: ApiKeys; verifier: Verifier }> = async (app, { apiKeys, verifier }) => {
  app.get(
    '/api/uploads/status',
    {
      schema: {
        summary: 'Status of an uploaded reference; verifies it once its object has arrived',
        security: [{ bearer: [] }],
        querystring: StatusQuery,
        response: { 200: StatusResponse, ...errorResponses, 404: ErrorSchema },
      },
      onRequest: requireScope(apiKeys, DEFAULT_SCOPE),
    },
    async (request) => {
      const status = await verifier.status(principalOf(request).userId, request.query.key);
      // Another user's key, a missing one and a malformed one get the same answer.
      if (!status) throw notFound('Upload not found');
      return status;
    },
  );
};

import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { DEFAULT_SCOPE, type ApiKeys } from '../../domain/api-keys.js';
import type { Uploads } from '../../domain/uploads.js';
import { principalOf, requireScope } from '../auth.js';
import { errorResponses } from '../schemas.js';

const PresignBody = Type.Object(
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

const PresignResponse = Type.Object({
  s3_key: Type.String(),
  upload_url: Type.String(),
  content_type: Type.String(),
  max_bytes: Type.Integer(),
});

export const presignRoutes: FastifyPluginAsyncTypebox<{ apiKeys: ApiKeys; uploads: Uploads }> = async (app, { apiKeys, uploads }) => {
  app.post(
    '/api/s3/presign-upload',
    {
      schema: {
        summary: 'Create a presigned upload URL for an image, video or audio reference',
        security: [{ bearer: [] }],
        body: PresignBody,
        response: { 200: PresignResponse, ...errorResponses },
      },
      onRequest: requireScope(apiKeys, DEFAULT_SCOPE),
    },
    async (request) => uploads.presign(principalOf(request).userId, request.body),
  );
};

import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { DEFAULT_SCOPE, type ApiKeys } from '../../domain/api-keys.js';
import type { Generations } from '../../domain/generations/generations.js';
import { ASPECT_RATIOS } from '../../domain/generations/job.js';
import { principalOf, requireScope } from '../auth.js';
import { errorResponses, ErrorSchema } from '../schemas.js';

/** Bound on every key array: more references than any model takes. */
const MAX_KEYS_PER_FIELD = 8;
const MAX_PROMPT_LENGTH = 4000;

const Key = (description: string) => Type.String({ description, minLength: 1, maxLength: 1024 });
const Keys = (description: string) => Type.Array(Key(description), { maxItems: MAX_KEYS_PER_FIELD, description });

const CreateGenerationBody = Type.Object(
  {
    prompt: Type.String({ description: 'Prompt for the video', minLength: 1, maxLength: MAX_PROMPT_LENGTH }),
    modelName: Type.String({ description: 'Exact model id, such as veo-3.1 or keyframe-local', minLength: 1, maxLength: 100 }),
    // The formats of these three are checked by the domain, whose messages say what is allowed.
    aspectRatio: Type.Optional(Type.String({ description: `One of ${ASPECT_RATIOS.join(', ')}`, maxLength: 16, examples: ['16:9'] })),
    duration: Type.Optional(Type.String({ description: 'Whole seconds, such as 5s, 8s, 10s', maxLength: 16, examples: ['8s'] })),
    resolution: Type.Optional(Type.String({ description: 'Short side in lines, such as 720p, 1080p', maxLength: 16, examples: ['720p'] })),
    count: Type.Optional(Type.Integer({ description: 'Videos to queue', minimum: 1, maximum: 4 })),
    hasAudio: Type.Optional(Type.Boolean({ description: 'Ask for audio where the model supports it' })),
    startFrameKey: Type.Optional(Key('Image key: start frame')),
    endFrameKey: Type.Optional(Key('Image key: end frame')),
    ingredientImageKeys: Type.Optional(Keys('Image keys: visual references')),
    characterReferenceImageKeys: Type.Optional(Keys('Image keys: character references')),
    sourceVideoKey: Type.Optional(Key('Video key: source for edit-capable models')),
    referenceVideoKeys: Type.Optional(Keys('Video keys: video references')),
    audioKey: Type.Optional(Key('Audio key for audio-driven models')),
    templateId: Type.Optional(Type.String({ description: 'Template to associate with the generation', maxLength: 200 })),
    webhook_url: Type.Optional(
      Type.String({ description: 'Ours: receives a signed POST of the status body when the generation completes or fails', maxLength: 2048 }),
    ),
  },
  // Unknown fields are ignored, so clients of a newer Prism keep working.
  { additionalProperties: true },
);

const CreateGenerationResponse = Type.Object({
  generations: Type.Array(Type.Object({ generation_id: Type.String(), status: Type.Literal('generating') })),
  credits_charged: Type.Number(),
  latency_estimate_sec: Type.Object({ typical: Type.Number(), busy: Type.Number() }),
});

const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);

const GenerationStatus = Type.Object({
  id: Type.String(),
  status: Type.Union([Type.Literal('generating'), Type.Literal('completed'), Type.Literal('failed')]),
  template_id: Nullable(Type.String()),
  video_url: Nullable(Type.String({ description: 'Presigned download URL, valid 1 hour; only when completed' })),
  share_url: Nullable(Type.String()),
  created_at: Type.String(),
  completed_at: Nullable(Type.String({ description: 'Only when completed' })),
  error: Nullable(Type.String({ description: 'Only when failed' })),
});

export const generationRoutes: FastifyPluginAsyncTypebox<{ apiKeys: ApiKeys; generations: Generations }> = async (app, { apiKeys, generations }) => {
  const auth = requireScope(apiKeys, DEFAULT_SCOPE);

  app.post(
    '/api/generations',
    {
      schema: {
        summary: 'Create Generation: queue videos made from a prompt and uploaded references',
        security: [{ bearer: [] }],
        body: CreateGenerationBody,
        response: { 200: CreateGenerationResponse, ...errorResponses, 404: ErrorSchema, 429: ErrorSchema },
      },
      onRequest: auth,
    },
    async (request) => generations.create(principalOf(request).userId, request.body),
  );

  app.get(
    '/api/generations/:id',
    {
      schema: {
        summary: 'Get Generation Status',
        security: [{ bearer: [] }],
        params: Type.Object({ id: Type.String({ maxLength: 100 }) }),
        response: { 200: GenerationStatus, ...errorResponses, 404: ErrorSchema },
      },
      onRequest: auth,
    },
    async (request) => generations.status(principalOf(request).userId, request.params.id),
  );
};

import { Type, type Static } from '@sinclair/typebox';

/** Aspect ratios Prism documents for Create Generation. */
export const ASPECT_RATIOS = ['auto', '21:9', '16:9', '4:3', '1:1', '3:4', '9:16'] as const;

/** Bound on every key array: more references than any model takes. */
export const MAX_KEYS_PER_FIELD = 8;
export const MAX_PROMPT_LENGTH = 4000;

const Key = (description: string) => Type.String({ description, minLength: 1, maxLength: 1024 });
const Keys = (description: string) => Type.Array(Key(description), { maxItems: MAX_KEYS_PER_FIELD, description });

/** Create Generation's body, as Prism documents it plus our `webhook_url`. */
export const CreateGenerationRequest = Type.Object(
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
export type CreateGenerationRequest = Static<typeof CreateGenerationRequest>;

/** Create Generation's answer, in the shape of Prism's template generate. */
export const CreateGenerationResponse = Type.Object({
  generations: Type.Array(Type.Object({ generation_id: Type.String(), status: Type.Literal('generating') })),
  credits_charged: Type.Number(),
  latency_estimate_sec: Type.Object({ typical: Type.Number(), busy: Type.Number() }),
}, { $id: 'CreateGenerationResponse' });
export type CreateGenerationResponse = Static<typeof CreateGenerationResponse>;

export const GENERATION_STATES = ['generating', 'completed', 'failed'] as const;
export type GenerationState = (typeof GENERATION_STATES)[number];

const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);

/** Get Generation Status's body, field for field as Prism documents it. */
export const GenerationStatus = Type.Object({
  id: Type.String(),
  status: Type.Union(GENERATION_STATES.map((s) => Type.Literal(s))),
  template_id: Nullable(Type.String()),
  video_url: Nullable(Type.String({ description: 'Presigned download URL, valid 1 hour; only when completed' })),
  share_url: Nullable(Type.String()),
  created_at: Type.String(),
  completed_at: Nullable(Type.String({ description: 'Only when completed' })),
  error: Nullable(Type.String({ description: 'Only when failed' })),
}, { $id: 'GenerationStatus' });
export type GenerationStatus = Static<typeof GenerationStatus>;

export const GenerationIdParams = Type.Object({ id: Type.String({ maxLength: 100 }) });
export type GenerationIdParams = Static<typeof GenerationIdParams>;

/**
 * Ours: what a model worker (runner `http`) POSTs to `/api/generations/{id}/callback` when a job
 * ends, signed with the job's secret (docs/generations.md). Read as the exact text that was signed.
 */
export const RunnerCallbackBody = Type.Union(
  [
    Type.Object({ status: Type.Literal('completed') }),
    Type.Object({ status: Type.Literal('failed'), error: Type.String({ description: 'Why the job failed; answered as the status `error`' }) }),
  ],
  { $id: 'RunnerCallback' },
);
export type RunnerCallbackBody = Static<typeof RunnerCallbackBody>;

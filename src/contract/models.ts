import { Type, type Static } from '@sinclair/typebox';
import { ASPECT_RATIOS } from './generations.js';

/** The reference fields of Create Generation, in the order a form shows them. */
export const REFERENCE_FIELD_NAMES = [
  'startFrameKey',
  'endFrameKey',
  'ingredientImageKeys',
  'characterReferenceImageKeys',
  'sourceVideoKey',
  'referenceVideoKeys',
  'audioKey',
] as const;

const Range = Type.Object({ min: Type.String(), max: Type.String() });

/** Ours: what one model of the registry accepts (GET /api/models), for forms and clients. */
export const ModelInfo = Type.Object({
  name: Type.String({ description: 'The `modelName` to send' }),
  description: Type.Union([Type.String(), Type.Null()]),
  reference_fields: Type.Array(Type.Union(REFERENCE_FIELD_NAMES.map((f) => Type.Literal(f))), { description: 'Reference fields the model takes' }),
  max_ingredient_images: Type.Integer(),
  durations: Type.Union([Type.Array(Type.String()), Range], { description: 'Accepted durations: a list (such as 5s, 8s) or a range' }),
  resolutions: Type.Union([Type.Array(Type.String()), Range], { description: 'Accepted resolutions: a list (such as 720p) or a range' }),
  aspect_ratios: Type.Array(Type.Union(ASPECT_RATIOS.map((a) => Type.Literal(a)))),
  audio: Type.Boolean({ description: 'Whether the model can make audio' }),
  defaults: Type.Object({
    duration: Type.String(),
    resolution: Type.String(),
    aspect_ratio: Type.Union(ASPECT_RATIOS.map((a) => Type.Literal(a))),
    has_audio: Type.Boolean(),
  }),
}, { $id: 'ModelInfo' });
export type ModelInfo = Static<typeof ModelInfo>;

export const ModelList = Type.Object({ models: Type.Array(ModelInfo) }, { $id: 'ModelList' });
export type ModelList = Static<typeof ModelList>;

import type { CreateGenerationRequest } from '../../contract/generations.js';
import { validationError } from '../errors.js';
import {
  ASPECT_RATIOS,
  parseDuration,
  parseResolution,
  REFERENCE_FIELDS,
  REFERENCE_FIELD_NAMES,
  type AspectRatio,
  type GenerationParams,
  type ReferenceField,
} from './job.js';
import { acceptsAspectRatio, acceptsDuration, acceptsField, acceptsResolution, describeRange, type ModelRegistry, type ModelSpec } from './model-registry.js';

/** Create Generation's body is the contract's (src/contract/generations.ts). */
export type { CreateGenerationRequest };

/** A reference key as the request names it, before verification. */
export interface RequestedReference {
  field: ReferenceField;
  key: string;
}

export interface ResolvedRequest {
  model: ModelSpec;
  params: Omit<GenerationParams, 'references'>;
  references: RequestedReference[];
}

/**
 * Checks the request against what its model accepts and fills in the model's
 * defaults. Every refusal names the field and says what the model accepts.
 */
export function resolveRequest(registry: ModelRegistry, request: CreateGenerationRequest): ResolvedRequest {
  if (request.prompt.trim() === '') throw validationError('prompt must not be empty');
  const model = registry.get(request.modelName);
  if (!model) throw validationError(`Unknown modelName "${request.modelName}"; available models: ${registry.names().join(', ')}`);
  const name = model.name;

  const references = requestedReferences(request);
  for (const field of new Set(references.map((r) => r.field))) {
    if (!acceptsField(model, field)) {
      const accepted = model.referenceFields.length > 0 ? model.referenceFields.join(', ') : 'no reference fields';
      throw validationError(`${field} is not accepted by ${name}; it accepts ${accepted}`);
    }
  }
  const ingredients = request.ingredientImageKeys?.length ?? 0;
  if (ingredients > model.maxIngredientImages) {
    throw validationError(`ingredientImageKeys has ${ingredients} images; ${name} accepts at most ${model.maxIngredientImages}`);
  }

  const aspectRatio = (request.aspectRatio ?? model.defaults.aspectRatio) as AspectRatio;
  if (!ASPECT_RATIOS.includes(aspectRatio)) throw validationError(`aspectRatio must be one of ${ASPECT_RATIOS.join(', ')}`);
  if (!acceptsAspectRatio(model, aspectRatio)) {
    throw validationError(`aspectRatio "${aspectRatio}" is not accepted by ${name}; it accepts ${model.aspectRatios.join(', ')}`);
  }
  const duration = request.duration ?? model.defaults.duration;
  const durationSeconds = parseDuration(duration);
  if (durationSeconds === undefined) throw validationError('duration must be whole seconds such as "8s"');
  if (!acceptsDuration(model, durationSeconds)) {
    throw validationError(`duration "${duration}" is not accepted by ${name}; it accepts ${describeRange(model.durations)}`);
  }
  const resolution = request.resolution ?? model.defaults.resolution;
  const resolutionLines = parseResolution(resolution);
  if (resolutionLines === undefined) throw validationError('resolution must be a line count such as "720p"');
  if (!acceptsResolution(model, resolutionLines)) {
    throw validationError(`resolution "${resolution}" is not accepted by ${name}; it accepts ${describeRange(model.resolutions)}`);
  }
  // A soundtrack upload is a request for audio, whatever hasAudio says.
  const hasAudio = request.audioKey !== undefined || (request.hasAudio ?? model.defaults.hasAudio);
  if (hasAudio && !model.audio) throw validationError(`hasAudio is not accepted by ${name}: it makes silent videos`);

  return { model, params: { aspectRatio, duration, durationSeconds, resolution, resolutionLines, hasAudio }, references };
}

/** Every reference key of the request, field by field in the table's order. */
function requestedReferences(request: CreateGenerationRequest): RequestedReference[] {
  const out: RequestedReference[] = [];
  for (const field of REFERENCE_FIELD_NAMES) {
    const value = request[field];
    if (value === undefined) continue;
    const keys = REFERENCE_FIELDS[field].many ? (value as string[]) : [value as string];
    for (const key of keys) out.push({ field, key });
  }
  return out;
}

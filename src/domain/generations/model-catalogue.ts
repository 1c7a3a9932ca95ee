import type { ModelInfo, ModelList } from '../../contract/models.js';
import type { ModelRegistry, ModelSpec } from './model-registry.js';

/**
 * What a client may know of one model: what it accepts, in the wire's snake_case. The runner
 * (and a worker's URL) and the latency estimate stay the operator's: they are not capabilities.
 */
export function modelInfoOf(model: ModelSpec): ModelInfo {
  return {
    name: model.name,
    description: model.description ?? null,
    reference_fields: [...model.referenceFields],
    max_ingredient_images: model.maxIngredientImages,
    durations: Array.isArray(model.durations) ? [...model.durations] : { min: model.durations.min, max: model.durations.max },
    resolutions: Array.isArray(model.resolutions) ? [...model.resolutions] : { min: model.resolutions.min, max: model.resolutions.max },
    aspect_ratios: [...model.aspectRatios],
    audio: model.audio,
    defaults: {
      duration: model.defaults.duration,
      resolution: model.defaults.resolution,
      aspect_ratio: model.defaults.aspectRatio,
      has_audio: model.defaults.hasAudio,
    },
  };
}

/** The registry's models, in the registry file's order. */
export function modelCatalogue(registry: ModelRegistry): ModelList {
  return { models: registry.all().map(modelInfoOf) };
}

import fs from 'node:fs';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { ASPECT_RATIOS, parseDuration, parseResolution, REFERENCE_FIELD_NAMES, type AspectRatio, type ReferenceField } from './job.js';

const DurationText = Type.String({ pattern: '^[1-9][0-9]{0,2}s$' });
const ResolutionText = Type.String({ pattern: '^[1-9][0-9]{2,3}p$' });

const RunnerSpecSchema = Type.Union([
  Type.Object({ type: Type.Literal('local') }, { additionalProperties: false }),
  Type.Object(
    {
      type: Type.Literal('http'),
      /** The operator's model worker: Keyframe POSTs each job here. */
      url: Type.String({ pattern: '^https?://' }),
    },
    { additionalProperties: false },
  ),
]);

const ModelSchema = Type.Object(
  {
    description: Type.Optional(Type.String()),
    runner: RunnerSpecSchema,
    referenceFields: Type.Array(Type.Union(REFERENCE_FIELD_NAMES.map((f) => Type.Literal(f))), { uniqueItems: true }),
    maxIngredientImages: Type.Integer({ minimum: 0, maximum: 8 }),
    durations: Type.Union([
      Type.Array(DurationText, { minItems: 1 }),
      Type.Object({ min: DurationText, max: DurationText }, { additionalProperties: false }),
    ]),
    resolutions: Type.Union([
      Type.Array(ResolutionText, { minItems: 1 }),
      Type.Object({ min: ResolutionText, max: ResolutionText }, { additionalProperties: false }),
    ]),
    aspectRatios: Type.Array(Type.Union(ASPECT_RATIOS.map((a) => Type.Literal(a))), { minItems: 1, uniqueItems: true }),
    audio: Type.Boolean(),
    defaults: Type.Object(
      { duration: DurationText, resolution: ResolutionText, aspectRatio: Type.Union(ASPECT_RATIOS.map((a) => Type.Literal(a))), hasAudio: Type.Boolean() },
      { additionalProperties: false },
    ),
    latencyEstimateSec: Type.Object({ typical: Type.Integer({ minimum: 0 }), busy: Type.Integer({ minimum: 0 }) }, { additionalProperties: false }),
  },
  { additionalProperties: false },
);

const RegistryFileSchema = Type.Object(
  { $comment: Type.Optional(Type.String()), models: Type.Record(Type.String({ pattern: '^[A-Za-z0-9._:-]{1,100}$' }), ModelSchema) },
  { additionalProperties: false },
);

export type RunnerSpec = Static<typeof RunnerSpecSchema>;
type ModelEntry = Static<typeof ModelSchema>;

/** What one model accepts, and which runner makes its videos. */
export interface ModelSpec extends ModelEntry {
  name: string;
}

export class ModelRegistryError extends Error {
  constructor(file: string, problems: string[]) {
    super(`invalid model registry ${file}: ${problems.join('; ')}`);
    this.name = 'ModelRegistryError';
  }
}

/** The models Keyframe knows, from the registry file (docs/generations.md). */
export class ModelRegistry {
  private readonly models: Map<string, ModelSpec>;

  constructor(models: ModelSpec[]) {
    this.models = new Map(models.map((m) => [m.name, m]));
  }

  /** Reads and checks the file; throws a ModelRegistryError naming every problem. */
  static load(file: string): ModelRegistry {
    let parsed: unknown;
    try {
      parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (err) {
      throw new ModelRegistryError(file, [(err as Error).message]);
    }
    return ModelRegistry.fromJson(parsed, file);
  }

  static fromJson(parsed: unknown, source = '(inline)'): ModelRegistry {
    if (!Value.Check(RegistryFileSchema, parsed)) {
      const problems = [...Value.Errors(RegistryFileSchema, parsed)].slice(0, 5).map((e) => `${e.path || '/'}: ${e.message}`);
      throw new ModelRegistryError(source, problems);
    }
    const models = Object.entries(parsed.models).map(([name, entry]) => ({ name, ...entry }));
    const problems = models.flatMap(consistencyProblems);
    if (models.length === 0) problems.push('no models');
    if (problems.length > 0) throw new ModelRegistryError(source, problems);
    return new ModelRegistry(models);
  }

  get(name: string): ModelSpec | undefined {
    return this.models.get(name);
  }

  names(): string[] {
    return [...this.models.keys()];
  }

  all(): ModelSpec[] {
    return [...this.models.values()];
  }
}

/** Whether `model` accepts a duration of `seconds`. */
export function acceptsDuration(model: ModelSpec, seconds: number): boolean {
  const d = model.durations;
  if (Array.isArray(d)) return d.some((x) => parseDuration(x) === seconds);
  return seconds >= parseDuration(d.min)! && seconds <= parseDuration(d.max)!;
}

/** Whether `model` renders `lines` (720 for 720p). */
export function acceptsResolution(model: ModelSpec, lines: number): boolean {
  const r = model.resolutions;
  if (Array.isArray(r)) return r.some((x) => parseResolution(x) === lines);
  return lines >= parseResolution(r.min)! && lines <= parseResolution(r.max)!;
}

export const acceptsAspectRatio = (model: ModelSpec, ratio: AspectRatio) => model.aspectRatios.includes(ratio);
export const acceptsField = (model: ModelSpec, field: ReferenceField) => model.referenceFields.includes(field);

/** Human text of a list-or-range capability, for error messages. */
export function describeRange(value: string[] | { min: string; max: string }): string {
  return Array.isArray(value) ? value.join(', ') : `${value.min} to ${value.max}`;
}

function consistencyProblems(m: ModelSpec): string[] {
  const problems: string[] = [];
  const where = `models.${m.name}`;
  const range = (r: string[] | { min: string; max: string }, parse: (s: string) => number | undefined, what: string) => {
    if (!Array.isArray(r) && parse(r.min)! > parse(r.max)!) problems.push(`${where}.${what}: min is above max`);
  };
  range(m.durations, parseDuration, 'durations');
  range(m.resolutions, parseResolution, 'resolutions');
  if (!acceptsDuration(m, parseDuration(m.defaults.duration)!)) problems.push(`${where}.defaults.duration is not among its durations`);
  if (!acceptsResolution(m, parseResolution(m.defaults.resolution)!)) problems.push(`${where}.defaults.resolution is not among its resolutions`);
  if (!acceptsAspectRatio(m, m.defaults.aspectRatio)) problems.push(`${where}.defaults.aspectRatio is not among its aspectRatios`);
  if (m.defaults.hasAudio && !m.audio) problems.push(`${where}.defaults.hasAudio is true but audio is false`);
  if (m.referenceFields.includes('audioKey') && !m.audio) problems.push(`${where} accepts audioKey but audio is false`);
  if (m.maxIngredientImages > 0 && !m.referenceFields.includes('ingredientImageKeys')) {
    problems.push(`${where}.maxIngredientImages is set but ingredientImageKeys is not among its referenceFields`);
  }
  if (m.latencyEstimateSec.typical > m.latencyEstimateSec.busy) problems.push(`${where}.latencyEstimateSec.typical is above busy`);
  return problems;
}

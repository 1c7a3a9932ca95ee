import { ASPECT_RATIOS, REFERENCE_FIELD_NAMES } from '../../contract/index.js';
import type { MediaFamily } from '../media-types.js';

/** The reference fields (the contract's list, in a form's order) and Prism's aspect ratios. */
export { ASPECT_RATIOS, REFERENCE_FIELD_NAMES };
export type ReferenceField = (typeof REFERENCE_FIELD_NAMES)[number];
export type AspectRatio = (typeof ASPECT_RATIOS)[number];

/**
 * The family of upload each reference field wants. The one table of them: validation, the
 * model registry and the runners all read it. Keyed by exactly the contract's field names
 * (`satisfies` refuses a missing or an extra one), so the two lists cannot drift.
 */
export const REFERENCE_FIELDS = {
  startFrameKey: { family: 'image', many: false },
  endFrameKey: { family: 'image', many: false },
  ingredientImageKeys: { family: 'image', many: true },
  characterReferenceImageKeys: { family: 'image', many: true },
  sourceVideoKey: { family: 'video', many: false },
  referenceVideoKeys: { family: 'video', many: true },
  audioKey: { family: 'audio', many: false },
} as const satisfies Record<ReferenceField, { family: MediaFamily; many: boolean }>;

/** One verified reference a job uses, in request order. */
export interface JobReference {
  field: ReferenceField;
  key: string;
  contentType: string;
  family: MediaFamily;
  /** ETag of the object as verified; absent on jobs stored before it was recorded. */
  etag?: string | null;
}

/**
 * What a generation was asked for, after validation and the model's defaults:
 * stored as JSON on the generation, so a job runs the same after a restart.
 */
export interface GenerationParams {
  aspectRatio: AspectRatio;
  /** As requested, e.g. `8s`. */
  duration: string;
  durationSeconds: number;
  /** As requested, e.g. `720p`. */
  resolution: string;
  /** Lines of the short side, e.g. 720. */
  resolutionLines: number;
  hasAudio: boolean;
  references: JobReference[];
}

/** A job as a runner receives it. */
export interface GenerationJob {
  id: string;
  userId: string;
  modelName: string;
  prompt: string;
  params: GenerationParams;
  /** Where the finished MP4 must be stored. */
  videoKey: string;
  /** When the job's time limit ends. */
  deadline: Date;
}

/** `8s` → 8; undefined when it is not a whole number of seconds. */
export function parseDuration(value: string): number | undefined {
  const m = /^([1-9][0-9]{0,2})s$/.exec(value);
  return m ? Number(m[1]) : undefined;
}

/** `720p` → 720; undefined when it is not a line count. */
export function parseResolution(value: string): number | undefined {
  const m = /^([1-9][0-9]{2,3})p$/.exec(value);
  return m ? Number(m[1]) : undefined;
}

/**
 * Frame size of a video: the resolution is the short side (720p 16:9 is
 * 1280x720, 720p 9:16 is 720x1280); `auto` renders 16:9. Both even, as yuv420p needs.
 */
export function frameSize(aspectRatio: AspectRatio, lines: number): { width: number; height: number } {
  const [w, h] = (aspectRatio === 'auto' ? '16:9' : aspectRatio).split(':').map(Number) as [number, number];
  const even = (n: number) => Math.max(2, Math.round(n / 2) * 2);
  return w >= h ? { width: even((lines * w) / h), height: even(lines) } : { width: even(lines), height: even((lines * h) / w) };
}

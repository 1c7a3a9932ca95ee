import type { MediaFamily } from '../media-types.js';

/**
 * The request fields that name uploaded references, and the family of upload
 * each one wants. The one table of them: validation, the model registry and
 * the runners all read it.
 */
export const REFERENCE_FIELDS = {
  startFrameKey: { family: 'image', many: false },
  endFrameKey: { family: 'image', many: false },
  ingredientImageKeys: { family: 'image', many: true },
  characterReferenceImageKeys: { family: 'image', many: true },
  sourceVideoKey: { family: 'video', many: false },
  referenceVideoKeys: { family: 'video', many: true },
  audioKey: { family: 'audio', many: false },
} as const satisfies Record<string, { family: MediaFamily; many: boolean }>;

export type ReferenceField = keyof typeof REFERENCE_FIELDS;
export const REFERENCE_FIELD_NAMES = Object.keys(REFERENCE_FIELDS) as ReferenceField[];

/** Aspect ratios Prism documents for Create Generation. */
export const ASPECT_RATIOS = ['auto', '21:9', '16:9', '4:3', '1:1', '3:4', '9:16'] as const;
export type AspectRatio = (typeof ASPECT_RATIOS)[number];

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

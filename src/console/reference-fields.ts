import type { REFERENCE_FIELD_NAMES } from '../contract/index.js';

type ReferenceField = (typeof REFERENCE_FIELD_NAMES)[number];

/**
 * Each reference field of Create Generation: how the form names it, which family of upload it
 * takes, and whether it takes several. The family and `many` are the domain's table
 * (src/domain/generations/job.ts REFERENCE_FIELDS), copied so that the page's bundle carries no
 * server module (and no schema library); test/http/console.test.ts holds the two equal.
 */
export const CONSOLE_REFERENCE_FIELDS = {
  startFrameKey: { label: 'Start frame', family: 'image', many: false },
  endFrameKey: { label: 'End frame', family: 'image', many: false },
  ingredientImageKeys: { label: 'Ingredient images', family: 'image', many: true },
  characterReferenceImageKeys: { label: 'Character references', family: 'image', many: true },
  sourceVideoKey: { label: 'Source video', family: 'video', many: false },
  referenceVideoKeys: { label: 'Reference videos', family: 'video', many: true },
  audioKey: { label: 'Audio', family: 'audio', many: false },
} as const satisfies Record<ReferenceField, { label: string; family: 'image' | 'video' | 'audio'; many: boolean }>;

export type { ReferenceField };

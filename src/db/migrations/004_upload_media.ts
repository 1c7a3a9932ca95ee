import type { Kysely } from 'kysely';
import { textType } from '../dialect.js';

/**
 * What verification learnt about an upload's media (ffprobe on a private copy):
 * frame size, duration, codecs. Nullable: unknown until verified, and some do
 * not apply (an image has no duration, audio no frame size).
 */
const COLUMNS = [
  ['media_width', 'integer'],
  ['media_height', 'integer'],
  ['media_duration_seconds', 'double precision'],
  ['media_video_codec', 'text'],
  ['media_audio_codec', 'text'],
] as const;

export async function up(db: Kysely<unknown>): Promise<void> {
  // One column per statement: SQLite's ALTER TABLE adds one at a time.
  for (const [name, type] of COLUMNS) {
    await db.schema.alterTable('uploads').addColumn(name, type === 'text' ? textType(db) : type).execute();
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const [name] of [...COLUMNS].reverse()) await db.schema.alterTable('uploads').dropColumn(name).execute();
}

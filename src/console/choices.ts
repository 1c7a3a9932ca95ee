import type { MediaInfo, ModelInfo } from '../contract/index.js';

/** The console's choices for a model's list-or-range capabilities, and how it describes media. Pure: no DOM. */

export type Family = 'image' | 'video' | 'audio';

/** The upload family of a content type (image/png → image); null for anything else. */
export function familyOf(contentType: string): Family | null {
  const top = contentType.split('/', 1)[0];
  return top === 'image' || top === 'video' || top === 'audio' ? top : null;
}

const seconds = (text: string) => Number.parseInt(text, 10);

/** Durations to offer: the model's list, or every whole second of its range. */
export function durationChoices(model: ModelInfo): string[] {
  const d = model.durations;
  if (Array.isArray(d)) return [...d];
  const out: string[] = [];
  for (let s = seconds(d.min); s <= seconds(d.max); s++) out.push(`${s}s`);
  return out;
}

/** The usual video heights, offered inside a resolution range. */
const COMMON_LINES = [360, 480, 540, 576, 720, 1080, 1440, 2160];

/** Resolutions to offer: the model's list, or the usual heights inside its range and the range's ends. */
export function resolutionChoices(model: ModelInfo): string[] {
  const r = model.resolutions;
  if (Array.isArray(r)) return [...r];
  const min = seconds(r.min);
  const max = seconds(r.max);
  const lines = new Set([min, ...COMMON_LINES.filter((l) => l > min && l < max), max]);
  return [...lines].sort((a, b) => a - b).map((l) => `${l}p`);
}

/** What verification found, for a person: 640×480 · 5.00 s · h264 / aac. */
export function describeMedia(media: MediaInfo | null): string {
  if (!media) return '';
  const parts: string[] = [];
  if (media.width !== null && media.height !== null) parts.push(`${media.width}×${media.height}`);
  if (media.duration_seconds !== null) parts.push(`${media.duration_seconds.toFixed(2)} s`);
  const codecs = [media.video_codec, media.audio_codec].filter((c): c is string => c !== null);
  if (codecs.length > 0) parts.push(codecs.join(' / '));
  return parts.join(' · ');
}

/** Bytes for a person: 1.2 MB. */
export function describeSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

import { imageSize } from 'image-size';
import { MEDIA_LIMITS } from '../media-types.js';

/**
 * Image dimensions from the header alone (PNG IHDR, JPEG SOF, WebP VP8/VP8L/
 * VP8X, GIF logical screen), with `image-size`: nothing is decoded, so a
 * pixel bomb (a small file declaring 8000×8000) costs a few bytes of parsing.
 */

/** Bytes from the stream start that verification reads, at most, to find the dimensions (a JPEG SOF behind large EXIF/ICC segments). */
export const DIMENSION_BYTES = 1024 * 1024;

export interface ImageDimensions {
  width: number;
  height: number;
}

/** The dimensions `head` declares, or null when they are not within it (or it is no image format `image-size` knows). */
export function readImageDimensions(head: Uint8Array): ImageDimensions | null {
  try {
    const { width, height } = imageSize(head);
    return Number.isInteger(width) && Number.isInteger(height) ? { width, height } : null;
  } catch {
    return null;
  }
}

/** Why an image of these dimensions is refused (MEDIA_LIMITS.image), or null when within the limits. */
export function imageDimensionsProblem({ width, height }: ImageDimensions): string | null {
  const { maxSide, maxPixels } = MEDIA_LIMITS.image;
  if (width < 1 || height < 1) return `the image declares ${width}×${height} pixels`;
  if (width > maxSide || height > maxSide) return `the image is ${width}×${height} pixels, over the limit of ${maxSide} pixels a side`;
  if (width * height > maxPixels) {
    return `the image is ${width}×${height} pixels (${megapixels(width * height)} MP), over the limit of ${megapixels(maxPixels)} MP`;
  }
  return null;
}

const megapixels = (pixels: number) => String(Math.round(pixels / 1e5) / 10);

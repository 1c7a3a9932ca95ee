/**
 * Keyframe's typed client, browser entry (`keyframe/client` under the `browser` condition):
 * nothing here or in what it imports uses Node, so a bundler can ship it to a page.
 *
 *   const client = new KeyframeClient({ baseUrl: 'https://keyframe.example', apiKey: 'prism_sk_…' });
 *   const ref = await client.uploadReference(file, { onProgress: ({ loaded, total }) => … });
 *   if (ref.status.state === 'verified') await client.createGeneration({ prompt, modelName, startFrameKey: ref.s3_key });
 */
export { KeyframeClient, type KeyframeClientOptions, type UploadOptions, type UploadedReference, type WaitOptions } from './client.js';
export { KeyframeError } from './errors.js';
export type { MultipartResume } from './multipart.js';
export type { UploadInput } from './source.js';
export type {
  ErrorBody,
  PresignRequest,
  PresignResponse,
  UploadState,
  UploadStatusResponse,
  MediaInfo,
  CreateGenerationRequest,
  CreateGenerationResponse,
  GenerationState,
  GenerationStatus,
  ModelInfo,
  ModelList,
  CreateMultipartRequest,
  CreateMultipartResponse,
  SignedPart,
  BatchPartsResponse,
  ListedPart,
  CompleteMultipartRequest,
  CompleteMultipartResponse,
} from '../contract/index.js';

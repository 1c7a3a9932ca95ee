/**
 * Keyframe's typed client, Node entry (`keyframe/client` under the `node` condition): the
 * browser entry's client, whose uploads also take a file path (read in ranges, never whole),
 * a Buffer, or a readable stream of unknown length (multipart once it passes the threshold).
 *
 *   import { KeyframeClient } from 'keyframe/client';
 *   const client = new KeyframeClient({ baseUrl: 'http://127.0.0.1:3000', apiKey: process.env.KEYFRAME_API_KEY! });
 *   const ref = await client.uploadReference('./clip.mp4', { onProgress: ({ loaded, total }) => … });
 */
import { KeyframeClient as BrowserKeyframeClient, type UploadOptions, type UploadedReference } from './client.js';
import { nodeSource, type NodeUploadInput } from './node-sources.js';

export * from './index.js';
export type { NodeUploadInput } from './node-sources.js';

export class KeyframeClient extends BrowserKeyframeClient {
  override async uploadReference(input: NodeUploadInput, options: UploadOptions = {}): Promise<UploadedReference> {
    return this.uploadSource(await nodeSource(input, this.multipartThreshold), options);
  }
}

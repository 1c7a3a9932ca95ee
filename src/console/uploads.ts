import type { KeyframeClient } from '../client/index.js';
import type { UploadStatusResponse } from '../contract/index.js';
import { describeMedia, describeSize, familyOf, type Family } from './choices.js';
import { el } from './dom.js';
import { messageOf } from './errors.js';

/** One upload the page made: a verified one is offered to the reference fields. */
export interface PageUpload {
  fileName: string;
  key: string;
  contentType: string;
  family: Family | null;
  state: UploadStatusResponse['state'];
}

/** States after which an upload's status no longer changes by itself. */
const SETTLED = new Set(['verified', 'rejected', 'expired', 'deleted']);
/** How long the page asks again while an upload is stored but not yet checked. */
const SETTLE_POLLS_MS = [500, 1000, 2000, 3000, 5000, 5000, 10_000, 10_000, 20_000];

/**
 * The uploads list: one item per file (name, progress bar, then the verification's state, reason
 * and media), each uploaded with the typed client. `onChange` runs whenever an upload settles.
 */
export class UploadList {
  private uploads: PageUpload[] = [];
  private previews: string[] = [];
  private count = 0;
  /** Bumped by `clear`: an upload still running for an earlier key is not offered once it ends. */
  private epoch = 0;

  constructor(
    private readonly list: HTMLUListElement,
    private readonly onChange: () => void,
  ) {}

  verified(family: Family): PageUpload[] {
    return this.uploads.filter((u) => u.state === 'verified' && u.family === family);
  }

  /** Forgets every upload (another key is another user, whose uploads these are not). */
  clear(): void {
    this.epoch++;
    this.uploads = [];
    for (const url of this.previews) URL.revokeObjectURL(url);
    this.previews = [];
    this.list.replaceChildren();
    this.onChange();
  }

  /** Uploads every file at once; each item reports its own outcome, so one failure stops no other. */
  async add(client: KeyframeClient, files: Iterable<File>): Promise<void> {
    await Promise.all([...files].map((file) => this.upload(client, file)));
  }

  private async upload(client: KeyframeClient, file: File): Promise<void> {
    const n = ++this.count;
    const epoch = this.epoch;
    const progress = el('progress', { id: `upload-${n}-progress`, max: file.size || 1, value: 0 });
    progress.setAttribute('aria-label', `Upload progress of ${file.name}`);
    const state = el('span', { className: 'state', id: `upload-${n}-state`, textContent: 'uploading' });
    const details = el('span', { className: 'details', id: `upload-${n}-details` });
    const previewUrl = file.type.startsWith('image/') ? URL.createObjectURL(file) : null;
    if (previewUrl) this.previews.push(previewUrl);
    const preview = previewUrl
      ? el('img', { src: previewUrl, alt: `Preview of ${file.name}` })
      : el('span', { className: 'placeholder', textContent: file.type.split('/', 1)[0] || 'file' });
    const item = el(
      'li',
      { id: `upload-${n}`, dataset: { state: 'uploading', fileName: file.name } },
      preview,
      el('strong', { className: 'name', textContent: `${file.name} (${describeSize(file.size)})` }),
      progress,
      el('span', {}, state, ' ', details),
    );
    this.list.append(item);
    const show = (status: UploadStatusResponse) => {
      item.dataset.state = status.state;
      item.dataset.key = status.s3_key;
      state.textContent = status.state;
      details.textContent = status.state === 'rejected' ? (status.reason ?? 'rejected') : describeMedia(status.media);
    };
    try {
      const uploaded = await client.uploadReference(file, {
        fileName: file.name,
        onProgress: ({ loaded, total }) => {
          progress.max = total || 1;
          progress.value = loaded;
        },
      });
      progress.value = progress.max;
      let status = uploaded.status;
      show(status);
      // Stored but not yet checked (a verifier busy elsewhere): ask again until it settles.
      for (const wait of SETTLE_POLLS_MS) {
        if (SETTLED.has(status.state)) break;
        await new Promise((resolve) => setTimeout(resolve, wait));
        status = await client.uploadStatus(uploaded.s3_key);
        show(status);
      }
      if (epoch !== this.epoch) return;
      this.uploads.push({ fileName: file.name, key: status.s3_key, contentType: uploaded.content_type, family: familyOf(uploaded.content_type), state: status.state });
    } catch (err) {
      if (epoch !== this.epoch) return;
      item.dataset.state = 'failed';
      state.textContent = 'failed';
      details.textContent = messageOf(err);
    }
    this.onChange();
  }
}

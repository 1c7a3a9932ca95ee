import { KeyframeClient } from '../client/index.js';
import { forgetApiKey, maskedKey, storeApiKey, storedApiKey } from './api-key.js';
import { byId } from './dom.js';
import { messageOf } from './errors.js';
import { GenerationForm } from './generation.js';
import { UploadList } from './uploads.js';

/**
 * The browser console (/console): paste a key, upload references, make a video. Every call goes
 * through the typed client (src/client) to this page's own origin; uploads go where the API's
 * presigns point (the store), as for any client.
 */

const keyForm = byId<HTMLFormElement>('key-form');
const keyInput = byId<HTMLInputElement>('api-key');
const keyState = byId<HTMLParagraphElement>('key-state');
const dropZone = byId<HTMLDivElement>('drop-zone');
const fileInput = byId<HTMLInputElement>('file-input');
const errorLine = byId<HTMLParagraphElement>('error');

let client: KeyframeClient | null = null;

function showError(err: unknown): void {
  errorLine.textContent = messageOf(err);
  errorLine.hidden = false;
}

function clearError(): void {
  errorLine.textContent = '';
  errorLine.hidden = true;
}

const uploads = new UploadList(byId<HTMLUListElement>('uploads'), () => form.refreshReferences());
const form = new GenerationForm(uploads, () => client, showError);

async function useKey(apiKey: string | null): Promise<void> {
  clearError();
  client = apiKey ? new KeyframeClient({ baseUrl: location.origin, apiKey }) : null;
  fileInput.disabled = client === null;
  dropZone.setAttribute('aria-disabled', String(client === null));
  keyState.dataset.state = client ? 'set' : 'none';
  keyState.textContent = apiKey
    ? `Using key ${maskedKey(apiKey)} (kept in this tab only).`
    : 'No key: paste one. It is kept in this tab only (sessionStorage).';
  uploads.clear();
  form.setModels([]);
  if (!client) return;
  try {
    form.setModels((await client.listModels()).models);
  } catch (err) {
    showError(err);
  }
}

function uploadFiles(files: FileList | null): void {
  if (!client) return showError(new Error('Paste an API key first.'));
  if (!files || files.length === 0) return;
  clearError();
  void uploads.add(client, [...files]);
}

keyForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const apiKey = keyInput.value.trim();
  if (!apiKey) return;
  storeApiKey(apiKey);
  void useKey(apiKey);
});

byId<HTMLButtonElement>('key-forget').addEventListener('click', () => {
  forgetApiKey();
  keyInput.value = '';
  void useKey(null);
});

fileInput.addEventListener('change', () => {
  uploadFiles(fileInput.files);
  // The same file may be chosen again.
  fileInput.value = '';
});

dropZone.addEventListener('click', () => fileInput.click());
dropZone.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' || event.key === ' ') {
    event.preventDefault();
    fileInput.click();
  }
});
dropZone.addEventListener('dragover', (event) => {
  event.preventDefault();
  dropZone.classList.add('over');
});
dropZone.addEventListener('dragleave', () => dropZone.classList.remove('over'));
dropZone.addEventListener('drop', (event) => {
  event.preventDefault();
  dropZone.classList.remove('over');
  uploadFiles(event.dataTransfer?.files ?? null);
});
// A file dropped beside the zone would make the browser navigate to it, leaving the page.
window.addEventListener('dragover', (event) => event.preventDefault());
window.addEventListener('drop', (event) => event.preventDefault());

const saved = storedApiKey();
if (saved) keyInput.value = saved;
void useKey(saved);

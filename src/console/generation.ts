import type { KeyframeClient } from '../client/index.js';
import type { CreateGenerationRequest, GenerationStatus, ModelInfo } from '../contract/index.js';
import { durationChoices, resolutionChoices } from './choices.js';
import { byId, el, fillSelect } from './dom.js';
import { CONSOLE_REFERENCE_FIELDS as REFERENCE_FIELDS, type ReferenceField } from './reference-fields.js';
import type { UploadList } from './uploads.js';

/**
 * The generation form: its fields follow the selected model of GET /api/models (durations,
 * resolutions, aspect ratios, audio, and which reference fields it takes), and each reference
 * field offers the verified uploads of its family.
 */
export class GenerationForm {
  private models: ModelInfo[] = [];
  private readonly form = byId<HTMLFormElement>('generation-form');
  private readonly model = byId<HTMLSelectElement>('model');
  private readonly description = byId<HTMLParagraphElement>('model-description');
  private readonly prompt = byId<HTMLTextAreaElement>('prompt');
  private readonly duration = byId<HTMLSelectElement>('duration');
  private readonly resolution = byId<HTMLSelectElement>('resolution');
  private readonly aspectRatio = byId<HTMLSelectElement>('aspect-ratio');
  private readonly hasAudio = byId<HTMLInputElement>('has-audio');
  private readonly references = byId<HTMLDivElement>('reference-fields');
  private readonly submit = byId<HTMLButtonElement>('generate');
  private readonly state = byId<HTMLParagraphElement>('generation-state');
  private readonly result = byId<HTMLDivElement>('result');

  constructor(
    private readonly uploads: UploadList,
    private readonly clientOf: () => KeyframeClient | null,
    private readonly showError: (err: unknown) => void,
  ) {
    this.model.addEventListener('change', () => this.followModel());
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.generate();
    });
  }

  setModels(models: ModelInfo[]): void {
    this.models = models;
    const current = this.model.value;
    fillSelect(this.model, models.map((m) => ({ value: m.name, label: m.name })), current);
    this.model.disabled = models.length === 0;
    this.submit.disabled = models.length === 0;
    this.followModel();
  }

  /** Offers the verified uploads again (one settled); keeps what each field had selected. */
  refreshReferences(): void {
    for (const select of this.references.querySelectorAll('select')) {
      const field = select.name as ReferenceField;
      const kept = new Set([...select.selectedOptions].map((o) => o.value));
      const options = this.uploads.verified(REFERENCE_FIELDS[field].family).map((u) => el('option', { value: u.key, textContent: u.fileName, selected: kept.has(u.key) }));
      select.replaceChildren(...(REFERENCE_FIELDS[field].many ? [] : [el('option', { value: '', textContent: '(none)' })]), ...options);
    }
  }

  private selected(): ModelInfo | undefined {
    return this.models.find((m) => m.name === this.model.value);
  }

  private followModel(): void {
    const model = this.selected();
    if (!model) {
      this.references.replaceChildren();
      return;
    }
    this.description.textContent = model.description ?? '';
    const list = (values: string[]) => values.map((v) => ({ value: v, label: v }));
    fillSelect(this.duration, list(durationChoices(model)), model.defaults.duration);
    fillSelect(this.resolution, list(resolutionChoices(model)), model.defaults.resolution);
    fillSelect(this.aspectRatio, list(model.aspect_ratios), model.defaults.aspect_ratio);
    this.hasAudio.disabled = !model.audio;
    this.hasAudio.checked = model.audio && model.defaults.has_audio;
    this.references.replaceChildren(
      ...model.reference_fields.flatMap((field) => {
        const id = `ref-${field}`;
        const select = el('select', { id, name: field, multiple: REFERENCE_FIELDS[field].many });
        const family = REFERENCE_FIELDS[field].family;
        const hint = REFERENCE_FIELDS[field].many
          ? field === 'ingredientImageKeys'
            ? ` (${family}s, up to ${model.max_ingredient_images})`
            : ` (${family}s)`
          : ` (${family})`;
        return [el('label', { htmlFor: id, textContent: REFERENCE_FIELDS[field].label + hint }), select];
      }),
    );
    this.refreshReferences();
  }

  private request(model: ModelInfo): CreateGenerationRequest {
    const request: CreateGenerationRequest = {
      prompt: this.prompt.value,
      modelName: model.name,
      duration: this.duration.value,
      resolution: this.resolution.value,
      aspectRatio: this.aspectRatio.value,
      ...(model.audio ? { hasAudio: this.hasAudio.checked } : {}),
    };
    const fields = request as Record<string, unknown>;
    for (const select of this.references.querySelectorAll('select')) {
      const field = select.name as ReferenceField;
      const keys = [...select.selectedOptions].map((o) => o.value).filter((v) => v !== '');
      if (keys.length === 0) continue;
      fields[field] = REFERENCE_FIELDS[field].many ? keys : keys[0];
    }
    return request;
  }

  private async generate(): Promise<void> {
    const client = this.clientOf();
    const model = this.selected();
    if (!client || !model) return;
    this.submit.disabled = true;
    this.result.replaceChildren();
    this.showState('submitting', 'submitting');
    try {
      const created = await client.createGeneration(this.request(model));
      const id = created.generations[0]!.generation_id;
      this.showState('generating', `generating (${id})`);
      const final = await client.waitForGeneration(id, { onStatus: (s) => this.showState(s.status, `${s.status} (${s.id})`) });
      this.showFinal(final);
    } catch (err) {
      this.showState('failed', 'failed');
      this.showError(err);
    } finally {
      this.submit.disabled = false;
    }
  }

  private showState(state: string, text: string): void {
    this.state.dataset.state = state;
    this.state.textContent = text;
  }

  private showFinal(status: GenerationStatus): void {
    this.showState(status.status, `${status.status} (${status.id})`);
    if (status.status === 'completed' && status.video_url) {
      const video = el('video', { id: 'result-video', controls: true, playsInline: true, preload: 'auto', src: status.video_url });
      video.setAttribute('aria-label', `Generated video ${status.id}`);
      this.result.replaceChildren(video);
    } else {
      this.result.replaceChildren(el('p', { id: 'result-error', className: 'error', textContent: status.error ?? `generation ${status.status}` }));
    }
  }
}

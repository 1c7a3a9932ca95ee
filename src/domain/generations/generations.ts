import type { CreateGenerationResponse } from '../../contract/generations.js';
import type { Transaction } from 'kysely';
import type { Db } from '../../db/database.js';
import type { Database } from '../../db/schema.js';
import type { JobProducer } from '../../queue/job-queue.js';
import type { ObjectStore } from '../../storage/object-store.js';
import { notFound, validationError } from '../errors.js';
import { randomId } from '../ids.js';
import { REFERENCE_FIELDS, type GenerationParams, type JobReference } from './job.js';
import type { ModelRegistry } from './model-registry.js';
import { resolveRequest, type CreateGenerationRequest, type RequestedReference } from './request.js';
import { statusBody, type GenerationStatus } from './status.js';
import type { WebhookDelivery } from './webhooks.js';
import type { UploadStatus, Verifier } from '../verification.js';
import type { GenerationLimits } from '../usage/generation-usage.js';
import { claimReferences, insertReferences } from '../lifecycle/references.js';

/** Create Generation's answer is the contract's (src/contract/generations.ts). */
export type { CreateGenerationResponse };

/** One wording for a missing key and another user's, so nobody can probe for keys. */
const referenceNotFound = (field: string) => notFound(`${field}: no upload found with this key`);

/** Submitting generations and reading their status. */
export class Generations {
  constructor(
    private readonly db: Db,
    private readonly verifier: Pick<Verifier, 'status'>,
    private readonly registry: ModelRegistry,
    private readonly queue: JobProducer,
    private readonly store: ObjectStore,
    private readonly webhooks: WebhookDelivery,
    /** Per-user limits on active and hourly generations (src/domain/usage/generation-usage.ts); none when absent. */
    private readonly limits: GenerationLimits | null = null,
  ) {}

  /** Validates the request and every reference, then queues `count` generations. */
  async create(userId: string, request: CreateGenerationRequest): Promise<CreateGenerationResponse> {
    const { model, params, references } = resolveRequest(this.registry, request);
    if (request.webhook_url !== undefined) {
      const refusal = await this.webhooks.refusal(request.webhook_url);
      if (refusal) throw validationError(`webhook_url ${refusal}`);
    }
    const verified = await this.verifyReferences(userId, references);
    const stored: GenerationParams = { ...params, references: verified };

    const count = request.count ?? 1;
    const createdAt = new Date().toISOString();
    const ids = Array.from({ length: count }, () => randomId('gen'));
    // One transaction: the references' row locks and re-check (a cleanup run may have marked one
    // since it was verified above), the generations, and the references they name.
    const insert = async (trx: Transaction<Database>) => {
      const gone = await claimReferences(trx, userId, verified, createdAt);
      if (gone !== null) throw referenceNotFound(gone);
      await trx
        .insertInto('generations')
        .values(
          ids.map((id) => ({
            id,
            user_id: userId,
            model_name: model.name,
            prompt: request.prompt,
            params: JSON.stringify(stored),
            template_id: request.templateId ?? null,
            webhook_url: request.webhook_url ?? null,
            status: 'generating' as const,
            error: null,
            attempts: 0,
            video_key: null,
            created_at: createdAt,
            started_at: null,
            completed_at: null,
          })),
        )
        .execute();
      await insertReferences(trx, ids, verified);
    };
    // Checked last, next to the insert and under a per-user lock: a refused request queued nothing.
    if (this.limits) await this.limits.admit(userId, count, model.latencyEstimateSec.typical, (trx) => insert(trx));
    else await this.db.transaction().execute((trx) => insert(trx));
    for (const id of ids) await this.queue.enqueue(id);
    return {
      generations: ids.map((id) => ({ generation_id: id, status: 'generating' as const })),
      credits_charged: 0,
      latency_estimate_sec: model.latencyEstimateSec,
    };
  }

  /** Get Generation Status; another user's generation is not found, like a missing one. */
  async status(userId: string, id: string): Promise<GenerationStatus> {
    const row = await this.db.selectFrom('generations').selectAll().where('id', '=', id).where('user_id', '=', userId).executeTakeFirst();
    if (!row) throw notFound('Generation not found');
    return statusBody(row, this.store);
  }

  /** Every key through the one verification; the first refusal wins, naming its field. */
  private async verifyReferences(userId: string, references: RequestedReference[]): Promise<JobReference[]> {
    const out: JobReference[] = [];
    for (const { field, key } of references) {
      const upload = await this.verifier.status(userId, key);
      // Marked for deletion or deleted by the retention policy: as good as missing.
      if (!upload || upload.state === 'deleted') throw referenceNotFound(field);
      if (upload.state !== 'verified') throw validationError(`${field}: ${notUsableReason(upload)}`);
      const wanted = REFERENCE_FIELDS[field].family;
      if (upload.family !== wanted) throw validationError(`${field} must be ${withArticle(wanted)} upload, but this key is ${upload.family} (${upload.content_type})`);
      out.push({ field, key, contentType: upload.content_type, family: upload.family, etag: upload.etag });
    }
    return out;
  }
}

function notUsableReason(upload: UploadStatus): string {
  switch (upload.state) {
    case 'pending':
      return 'the upload has not arrived yet (state pending); PUT the file to its upload_url first';
    case 'uploading':
      return 'the multipart upload is not complete yet (state uploading); complete it first';
    case 'expired':
      return 'the upload URL expired before the file arrived (state expired)';
    case 'rejected':
      return `the upload was rejected: ${upload.reason ?? 'it failed verification'}`;
    default:
      return `the upload is not verified yet (state ${upload.state})`;
  }
}

const withArticle = (family: string) => (family === 'video' ? `a ${family}` : `an ${family}`);

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Value } from '@sinclair/typebox/value';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelList } from '../../src/contract/models.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

// GET /api/models: the registry's models as the contract's ModelList, what each accepts and
// nothing of how it runs (runner, worker URL, latency), behind the API key as every /api route.

/** A registry of two models, one with lists and one with ranges, and an http runner whose URL must not leak. */
const REGISTRY = {
  models: {
    'list-model': {
      description: 'lists everywhere',
      runner: { type: 'http', url: 'http://127.0.0.1:9/secret-worker' },
      referenceFields: ['startFrameKey', 'ingredientImageKeys'],
      maxIngredientImages: 2,
      durations: ['4s', '8s'],
      resolutions: ['720p'],
      aspectRatios: ['16:9', '9:16'],
      audio: false,
      defaults: { duration: '8s', resolution: '720p', aspectRatio: '9:16', hasAudio: false },
      latencyEstimateSec: { typical: 10, busy: 20 },
    },
    'range-model': {
      runner: { type: 'local' },
      referenceFields: ['audioKey'],
      maxIngredientImages: 0,
      durations: { min: '2s', max: '6s' },
      resolutions: { min: '480p', max: '1080p' },
      aspectRatios: ['1:1'],
      audio: true,
      defaults: { duration: '3s', resolution: '480p', aspectRatio: '1:1', hasAudio: true },
      latencyEstimateSec: { typical: 1, busy: 2 },
    },
  },
};

describe('GET /api/models', () => {
  let tmp: string;
  let server: TestServer;
  let key: string;

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'keyframe-models-'));
    const file = path.join(tmp, 'models.json');
    await writeFile(file, JSON.stringify(REGISTRY));
    server = await startTestServer({ KEYFRAME_MODELS_FILE: file });
    key = (await server.createKey('alice')).key;
  });

  afterAll(async () => {
    await server?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('answers every model of the registry, in its order, as the contract ModelList, in snake_case', async () => {
    const res = await server.api('GET', '/api/models', { key });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(Value.Check(ModelList, res.body)).toBe(true);
    expect(res.body).toEqual({
      models: [
        {
          name: 'list-model',
          description: 'lists everywhere',
          reference_fields: ['startFrameKey', 'ingredientImageKeys'],
          max_ingredient_images: 2,
          durations: ['4s', '8s'],
          resolutions: ['720p'],
          aspect_ratios: ['16:9', '9:16'],
          audio: false,
          defaults: { duration: '8s', resolution: '720p', aspect_ratio: '9:16', has_audio: false },
        },
        {
          name: 'range-model',
          description: null,
          reference_fields: ['audioKey'],
          max_ingredient_images: 0,
          durations: { min: '2s', max: '6s' },
          resolutions: { min: '480p', max: '1080p' },
          aspect_ratios: ['1:1'],
          audio: true,
          defaults: { duration: '3s', resolution: '480p', aspect_ratio: '1:1', has_audio: true },
        },
      ],
    });
    // How a model runs is the operator's business.
    expect(JSON.stringify(res.body)).not.toContain('secret-worker');
  });

  it('refuses a request without a key (401) or with a key lacking the scope (403), in the envelope', async () => {
    const missing = await server.api('GET', '/api/models');
    expect(missing.status).toBe(401);
    expect(missing.body).toEqual({ error: 'unauthorized', message: expect.any(String) });
    const { key: scopeless } = await server.createKey('bob', ['other:scope']);
    const forbidden = await server.api('GET', '/api/models', { key: scopeless });
    expect(forbidden.status).toBe(403);
    expect(forbidden.body).toEqual({ error: 'forbidden', message: expect.any(String) });
  });

  it('answers 405 in the envelope to another method', async () => {
    const res = await server.api('POST', '/api/models', { key, body: {} });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET');
    expect(res.body.error).toBe('method_not_allowed');
  });

  it('is in the OpenAPI document as listModels, tagged models, behind the bearer key', async () => {
    const doc = (await server.api('GET', '/openapi.json')).body;
    const operation = doc.paths['/api/models'].get;
    expect(operation).toMatchObject({ operationId: 'listModels', tags: ['models'], security: [{ bearer: [] }] });
    expect(Object.keys(operation.responses)).toEqual(expect.arrayContaining(['200', '400', '401', '403', '500']));
  });
});

describe('GET /api/models on the shipped registry', () => {
  it('lists keyframe-local with its ranges and every reference field', async () => {
    const server = await startTestServer();
    try {
      const { key } = await server.createKey('carol');
      const res = await server.api('GET', '/api/models', { key });
      expect(res.status).toBe(200);
      const local = res.body.models.find((m: { name: string }) => m.name === 'keyframe-local');
      expect(local).toMatchObject({ durations: { min: '1s', max: '20s' }, audio: true, defaults: { duration: '5s' } });
      expect(local.reference_fields).toContain('audioKey');
      expect(res.body.models.map((m: { name: string }) => m.name)).toEqual(expect.arrayContaining(['veo-3.1', 'sora-2', 'keyframe-local']));
    } finally {
      await server.stop();
    }
  });
});

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { frameSize, parseDuration, parseResolution } from '../../src/domain/generations/job.js';
import { acceptsDuration, acceptsResolution, ModelRegistry, ModelRegistryError } from '../../src/domain/generations/model-registry.js';
import { startServer } from '../../src/server.js';

const shipped = () => ModelRegistry.load(loadConfig({}).generation.modelsFile);

const validModel = {
  runner: { type: 'local' },
  referenceFields: ['startFrameKey'],
  maxIngredientImages: 0,
  durations: ['4s'],
  resolutions: ['720p'],
  aspectRatios: ['16:9'],
  audio: false,
  defaults: { duration: '4s', resolution: '720p', aspectRatio: '16:9', hasAudio: false },
  latencyEstimateSec: { typical: 1, busy: 2 },
};

describe('the shipped model registry', () => {
  it('loads, with veo-3.1 as published and keyframe-local accepting everything', () => {
    const registry = shipped();
    const veo = registry.get('veo-3.1')!;
    expect(veo).toMatchObject({
      runner: { type: 'local' },
      referenceFields: ['startFrameKey', 'endFrameKey', 'ingredientImageKeys'],
      maxIngredientImages: 3,
      durations: ['4s', '6s', '8s'],
      resolutions: ['720p', '1080p'],
      aspectRatios: ['16:9', '9:16'],
      audio: true,
    });
    const local = registry.get('keyframe-local')!;
    expect(local.referenceFields).toHaveLength(7);
    expect(local.aspectRatios).toEqual(['auto', '21:9', '16:9', '4:3', '1:1', '3:4', '9:16']);
    expect([1, 20].every((s) => acceptsDuration(local, s))).toBe(true);
    expect([0, 21].some((s) => acceptsDuration(local, s))).toBe(false);
    expect([480, 720, 1080].every((l) => acceptsResolution(local, l))).toBe(true);
    expect([360, 1440].some((l) => acceptsResolution(local, l))).toBe(false);
    expect(local.audio).toBe(true);
  });
});

describe('an invalid registry file', () => {
  const cases: [string, unknown, RegExp][] = [
    ['an unknown runner', { models: { m: { ...validModel, runner: { type: 'gpu' } } } }, /\/models\/m\/runner/],
    ['an unknown reference field', { models: { m: { ...validModel, referenceFields: ['maskKey'] } } }, /referenceFields/],
    ['a malformed duration', { models: { m: { ...validModel, durations: ['four'] } } }, /durations/],
    ['a default the model does not accept', { models: { m: { ...validModel, defaults: { ...validModel.defaults, duration: '8s' } } } }, /models\.m\.defaults\.duration is not among its durations/],
    ['a range upside down', { models: { m: { ...validModel, durations: { min: '9s', max: '2s' }, defaults: { ...validModel.defaults, duration: '4s' } } } }, /durations: min is above max/],
    ['audioKey without audio', { models: { m: { ...validModel, referenceFields: ['audioKey'] } } }, /accepts audioKey but audio is false/],
    ['no models', { models: {} }, /no models/],
    ['a missing field', { models: { m: { ...validModel, audio: undefined } } }, /audio/],
  ];
  for (const [what, json, message] of cases) {
    it(`is refused with a clear error: ${what}`, () => {
      expect(() => ModelRegistry.fromJson(json, 'models.json')).toThrow(ModelRegistryError);
      expect(() => ModelRegistry.fromJson(json, 'models.json')).toThrow(message);
    });
  }

  it('stops the server at start-up, naming the file', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'keyframe-models-'));
    try {
      const file = path.join(dir, 'models.json');
      await writeFile(file, '{ "models": { "m": ');
      const config = loadConfig({ HOST: '127.0.0.1', PORT: '0', KEYFRAME_DATA_DIR: dir, LOG_LEVEL: 'silent', KEYFRAME_MODELS_FILE: file });
      await expect(startServer(config)).rejects.toThrow(`invalid model registry ${file}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('durations, resolutions and frame sizes', () => {
  it('parses whole seconds and line counts only', () => {
    expect(parseDuration('8s')).toBe(8);
    expect(['8', '0s', '1.5s', 's', '08s'].map(parseDuration)).toEqual([undefined, undefined, undefined, undefined, undefined]);
    expect(parseResolution('1080p')).toBe(1080);
    expect(['720', 'p', '72p', '0720p'].map(parseResolution)).toEqual([undefined, undefined, undefined, undefined]);
  });

  it('makes the resolution the short side, with even dimensions', () => {
    expect(frameSize('16:9', 720)).toEqual({ width: 1280, height: 720 });
    expect(frameSize('9:16', 1080)).toEqual({ width: 1080, height: 1920 });
    expect(frameSize('16:9', 480)).toEqual({ width: 854, height: 480 });
    expect(frameSize('21:9', 720)).toEqual({ width: 1680, height: 720 });
    expect(frameSize('1:1', 480)).toEqual({ width: 480, height: 480 });
    expect(frameSize('3:4', 480)).toEqual({ width: 480, height: 640 });
    expect(frameSize('auto', 720)).toEqual({ width: 1280, height: 720 });
  });
});

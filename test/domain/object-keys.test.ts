import { describe, expect, it } from 'vitest';
import { newUploadKey, parseUploadKey } from '../../src/domain/object-keys.js';

describe('upload keys', () => {
  it('sort by creation time, so new rows land at the end of the key index', async () => {
    const keys: string[] = [];
    for (let i = 0; i < 5; i++) {
      keys.push(newUploadKey('alice', 'png').key);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    expect([...keys].sort()).toEqual(keys);
  });

  it('stay unguessable: keys made in the same millisecond differ in their random part', () => {
    const keys = Array.from({ length: 1000 }, () => newUploadKey('alice', 'png'));
    expect(new Set(keys.map((k) => k.batchId.slice(-22))).size).toBe(1000);
    expect(new Set(keys.map((k) => k.fileId)).size).toBe(1000);
  });

  it('parse back into their parts', () => {
    const made = newUploadKey('alice', 'mp4');
    expect(parseUploadKey(made.key)).toEqual(made);
  });

  it('still parse in the shape issued before they carried the time', () => {
    const key = `users/alice/user-uploads/batch_${'a'.repeat(22)}/file_${'b'.repeat(22)}.png`;
    expect(parseUploadKey(key)?.userId).toBe('alice');
  });

  it('refuse anything else', () => {
    for (const key of [
      'users/alice/user-uploads/batch_x/file_y.png',
      `users/alice/user-uploads/batch_${'a'.repeat(21)}/file_${'b'.repeat(22)}.png`,
      `users/alice/user-uploads/batch_${'A'.repeat(12)}${'a'.repeat(22)}/file_${'b'.repeat(22)}.png`,
      `users/../user-uploads/batch_${'a'.repeat(22)}/file_${'b'.repeat(22)}.png`,
    ]) {
      expect(parseUploadKey(key), key).toBeUndefined();
    }
  });
});

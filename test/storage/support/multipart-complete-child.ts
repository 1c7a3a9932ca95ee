import { DiskStore } from '../../../src/storage/disk/disk-store.js';

// A process completing a multipart upload on the disk store, stopped (then SIGKILLed by the test)
// at the step STOP_AT names: `assembly` (part 3 about to be streamed into the assembled file),
// `meta` (metadata committed, object not linked yet), `drop` (object linked, upload not removed).
// It prints `stopped` and waits there forever. The hooks reach into private methods on purpose.

const { ROOT, KEY, UPLOAD_ID, PARTS, STOP_AT } = process.env as Record<string, string>;
const store = new DiskStore({ root: ROOT!, publicUrl: 'http://127.0.0.1:9', signingSecret: 'crash-test-secret' });
const hooks = store as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;

const stop = (): Promise<never> => {
  process.stdout.write('stopped\n');
  return new Promise<never>(() => {});
};

let assembling = false;
const assemble = hooks.assemble!.bind(store);
hooks.assemble = async (...args) => {
  assembling = true;
  return assemble(...args);
};
const openPart = hooks.openPart!.bind(store);
hooks.openPart = async (uploadId, partNumber) => {
  if (STOP_AT === 'assembly' && assembling && partNumber === 3) await stop();
  return openPart(uploadId, partNumber);
};
const writeMeta = hooks.writeMeta!.bind(store);
hooks.writeMeta = async (key, meta) => {
  await writeMeta(key, meta);
  if (STOP_AT === 'meta') await stop();
};
const dropUpload = hooks.dropUpload!.bind(store);
hooks.dropUpload = async (uploadId) => {
  if (STOP_AT === 'drop') await stop();
  return dropUpload(uploadId);
};

await store.completeMultipart(KEY!, UPLOAD_ID!, JSON.parse(PARTS!) as { partNumber: number; etag: string }[]);
process.stdout.write('completed\n');

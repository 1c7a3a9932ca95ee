import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MultipartSweep } from '../../src/domain/multipart-sweep.js';
import { MultipartUploads } from '../../src/domain/multipart-uploads.js';
import { uploadKeyFamily } from '../../src/domain/uploads.js';
import { PrometheusMetrics } from '../../src/metrics/prometheus.js';
import { parseExposition } from '../helpers/prometheus-text.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

// What multipart uploads tell the metrics, on a real server's database and disk store: a create
// is an issued upload URL, and an upload whose lifetime ended is `expired`, whether the sweep or
// the user's next create aborts it. Time is injected: uploads live 30 s, the clock is a minute ahead.

let server: TestServer;
const ahead = () => new Date(Date.now() + 60_000);

beforeAll(async () => {
  server = await startTestServer();
  await server.createKey('alice');
});

afterAll(async () => {
  await server?.stop();
});

const settled = async (metrics: PrometheusMetrics, labels: Record<string, string>) =>
  parseExposition(await metrics.render()).sum('keyframe_uploads_settled_total', labels);

describe('multipart uploads and the Telemetry port', () => {
  it('counts a create as an upload URL issued via multipart, of its family', async () => {
    const metrics = new PrometheusMetrics({ processMetrics: false });
    const uploads = new MultipartUploads(server.db, server.store, 300, null, { telemetry: metrics });
    const { key, uploadId } = await uploads.create('alice', { type: 'audio/mpeg', filename: 'song.mp3' });
    const text = parseExposition(await metrics.render());
    expect(text.value('keyframe_presigns_total', { family: 'audio', via: 'multipart' })).toBe(1);
    expect(text.sum('keyframe_presigns_total')).toBe(1);
    await uploads.abort('alice', key, uploadId);
    // A client's abort settles nothing the metrics count.
    expect(await settled(metrics, {})).toBe(0);
  });

  it('counts an upload the sweep aborted at the end of its lifetime as expired', async () => {
    const metrics = new PrometheusMetrics({ processMetrics: false });
    const short = new MultipartUploads(server.db, server.store, 300, null, { lifetimeSeconds: 30 });
    await short.create('alice', { type: 'video/mp4', filename: 'clip.mp4' });
    const now = ahead();
    const result = await new MultipartSweep(server.db, server.store, { intervalMs: 60_000, now: () => now, lifetimeSeconds: 30, telemetry: metrics }).runOnce();
    expect(result.aborted).toHaveLength(1);
    expect(await settled(metrics, { state: 'expired', family: 'video' })).toBe(1);
  });

  it("counts an upload the user's next create aborted as expired", async () => {
    const metrics = new PrometheusMetrics({ processMetrics: false });
    const short = new MultipartUploads(server.db, server.store, 300, null, { lifetimeSeconds: 30, telemetry: metrics });
    await short.create('alice', { type: 'image/png', filename: 'a.png' });
    expect(await short.abortExpired('alice', ahead())).toBe(1);
    expect(await settled(metrics, { state: 'expired', family: 'image' })).toBe(1);
    expect(await short.abortExpired('alice', ahead())).toBe(0);
    expect(await settled(metrics, { state: 'expired' })).toBe(1);
  });
});

describe('uploadKeyFamily', () => {
  it('is the family of the extension an upload key ends in', () => {
    expect(uploadKeyFamily('users/u/user-uploads/batch_01a232a14e4as66bIukt8hU2blWSEN-nCg/file_KIiPzlSPxmrIEvlgpt5Z3A.mp4')).toBe('video');
    expect(uploadKeyFamily('users/u/user-uploads/batch_01a232a14e4as66bIukt8hU2blWSEN-nCg/file_KIiPzlSPxmrIEvlgpt5Z3A.weba')).toBe('audio');
    expect(uploadKeyFamily('users/u/user-uploads/batch_01a232a14e4as66bIukt8hU2blWSEN-nCg/file_KIiPzlSPxmrIEvlgpt5Z3A.jpg')).toBe('image');
  });
});

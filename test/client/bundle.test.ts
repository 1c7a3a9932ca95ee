import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';

// The browser entry must bundle for a page: esbuild's browser platform refuses Node builtins, so
// a node:* import anywhere in src/client/index.ts's graph fails this build.

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

const bundle = (entry: string) =>
  build({
    entryPoints: [path.join(ROOT, entry)],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    minify: true,
    write: false,
    metafile: true,
    logLevel: 'silent',
  });

describe('the browser bundle of keyframe/client', () => {
  it('src/client/index.ts bundles for the browser platform, without Node builtins or the TypeBox runtime', async () => {
    const result = await bundle('src/client/index.ts');
    expect(result.errors).toEqual([]);
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.filter((i) => i.startsWith('node:') || i.includes('node-sources'))).toEqual([]);
    expect(inputs.filter((i) => i.includes('@sinclair/typebox'))).toEqual([]);
    expect(inputs).toContain('node_modules/file-type/core.js');
    const code = result.outputFiles[0]!.text;
    expect(code).not.toMatch(/from\s*"node:|require\("node:/);
    expect(code).toContain('KeyframeError');
    const bytes = new TextEncoder().encode(code).byteLength;
    console.log(`browser bundle of src/client/index.ts: ${bytes} bytes minified, ${gzipSync(code).byteLength} gzipped (${inputs.length} inputs)`);
    expect(bytes).toBeLessThan(200 * 1024);
  });

  it('the Node entry does not (it reads files): the check above can fail', async () => {
    await expect(bundle('src/client/node.ts')).rejects.toThrow(/node:fs/);
  });
});

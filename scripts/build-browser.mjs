// The browser console (src/console): esbuild bundles console.ts with the typed client it imports
// into dist/console/console.js (ESM, minified, with a source map), and copies the page and its
// style beside it. Run by `npm run build` after tsc; src/http/routes/console.ts serves the result.
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const source = path.join(root, 'src', 'console');
const out = path.join(root, 'dist', 'console');

await mkdir(out, { recursive: true });
await build({
  entryPoints: [path.join(source, 'console.ts')],
  outfile: path.join(out, 'console.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  sourcemap: true,
  // The page is served under a CSP without 'unsafe-eval' or inline script: nothing may need either.
  legalComments: 'none',
  logLevel: 'warning',
});
await Promise.all(['index.html', 'console.css'].map((name) => copyFile(path.join(source, name), path.join(out, name))));

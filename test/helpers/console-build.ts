import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { CONSOLE_DIR } from '../../src/http/routes/console.js';

const ROOT = path.resolve(CONSOLE_DIR, '..', '..');
/** What the bundle is made of: the page, the typed client and the contract. */
const SOURCE_DIRS = ['src/console', 'src/client', 'src/contract'].map((d) => path.join(ROOT, d));

const newestSource = () =>
  Math.max(...SOURCE_DIRS.flatMap((dir) => readdirSync(dir).map((name) => statSync(path.join(dir, name)).mtimeMs)));

/**
 * The built console (dist/console, what `npm run build` makes), which tests serving /console
 * need. When it is missing, or older than its sources (a page tested must be the page in the
 * tree), it is built here with the build's own script (esbuild only, about a second); a build
 * that fails fails the test, with esbuild's message.
 */
export async function ensureConsoleBuilt(): Promise<string> {
  const index = path.join(CONSOLE_DIR, 'index.html');
  const bundle = path.join(CONSOLE_DIR, 'console.js');
  if (existsSync(index) && existsSync(bundle) && statSync(bundle).mtimeMs >= newestSource()) return CONSOLE_DIR;
  try {
    await promisify(execFile)(process.execPath, ['scripts/build-browser.mjs'], { cwd: ROOT });
  } catch (err) {
    const { stderr } = err as { stderr?: string };
    throw new Error(`dist/console is missing or stale and building it failed (npm run build builds it): ${stderr || (err as Error).message}`);
  }
  if (!existsSync(index)) throw new Error(`scripts/build-browser.mjs made no ${index} (npm run build builds it)`);
  return CONSOLE_DIR;
}

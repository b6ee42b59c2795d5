/**
 * Bundles each deployable function (and the one-process server) into a single ESM file under
 * dist/. Bundling cuts @kubernetes/client-node's import from ~0.4 s / 130 MB to ~0.12 s / 82 MB,
 * which is most of a Knative cold start (see bench/startup.ts).
 */
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
export const entries: Record<string, string> = {
  submit: 'functions/submit/index.ts',
  jobs: 'functions/jobs/index.ts',
  uploads: 'functions/uploads/index.ts',
  server: 'server.ts',
};

export async function bundle(outdir = resolve(root, 'dist')): Promise<void> {
  rmSync(outdir, { recursive: true, force: true });
  await build({
    entryPoints: Object.fromEntries(Object.entries(entries).map(([name, file]) => [name, resolve(root, file)])),
    outdir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'esm',
    splitting: false,
    // No source maps: the bundles are not minified, so a stack trace already points at readable code,
    // and the maps (29 MB for the four bundles) would only weigh down the image.
    sourcemap: false,
    legalComments: 'none',
    logLevel: 'warning',
    // Some CommonJS dependencies (express, body-parser) call require(); give the ESM bundle one.
    banner: { js: "import { createRequire as __kbatchCreateRequire } from 'node:module'; const require = __kbatchCreateRequire(import.meta.url);" },
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const started = Date.now();
  await bundle();
  console.error(`bundled ${Object.keys(entries).join(', ')} into dist/ in ${Date.now() - started} ms`);
}

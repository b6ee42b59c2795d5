/**
 * Bundles each deployable function (and the one-process server) into a single ESM file under
 * dist/. Bundling cuts @kubernetes/client-node's import from ~0.4 s / 130 MB to ~0.12 s / 82 MB,
 * which is most of a Knative cold start (see bench/startup.ts). The CLI is bundled too, into
 * dist/kbatch.mjs, which bin/kbatch.mjs runs: no TypeScript is compiled when a user runs kbatch.
 */
import { build } from 'esbuild';
import { readFileSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
export const entries: Record<string, string> = {
  submit: 'functions/submit/index.ts',
  jobs: 'functions/jobs/index.ts',
  uploads: 'functions/uploads/index.ts',
  server: 'server.ts',
};

// Some CommonJS dependencies (express, body-parser; yaml for the CLI) call require(); give the ESM bundle one.
const requireBanner = {
  js: "import { createRequire as __kbatchCreateRequire } from 'node:module'; const require = __kbatchCreateRequire(import.meta.url);",
};

/** The CLI's bundle, run by bin/kbatch.mjs. */
export const cliBundle = resolve(root, 'dist', 'kbatch.mjs');

/**
 * Bundles the CLI alone, leaving the rest of dist/ as it is, so the CLI's test suites can rebuild
 * what they run in a fraction of a second. No source map: a user's run never reads one, and an
 * error is a one-line message, not a stack trace.
 */
export async function bundleCli(outfile = cliBundle): Promise<void> {
  await build({
    entryPoints: [resolve(root, 'cli/main.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    legalComments: 'none',
    logLevel: 'warning',
    banner: requireBanner,
  });
}

export async function bundle(outdir = resolve(root, 'dist')): Promise<void> {
  rmSync(outdir, { recursive: true, force: true });
  await bundleCli(resolve(outdir, 'kbatch.mjs'));
  await build({
    entryPoints: Object.fromEntries(Object.entries(entries).map(([name, file]) => [name, resolve(root, file)])),
    outdir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'esm',
    splitting: false,
    // No source maps: identifiers are not minified, so a stack trace still names readable functions,
    // and the maps (29 MB for the four bundles) would only weigh down the image.
    sourcemap: false,
    // Whitespace and comments go: the bundle halves (8.4 to 4.5 MB), and, above all, it becomes pure
    // ASCII. A few comments in dependencies hold a non-ASCII character (’, §), which made V8 keep the
    // whole source as a two-byte string: 13 MB more RSS for the life of every process, and a slower
    // read and parse at each cold start (bench/startup.ts).
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'none',
    logLevel: 'warning',
    banner: requireBanner,
  });
  for (const name of Object.keys(entries)) {
    const file = resolve(outdir, `${name}.mjs`);
    if (/[^\x00-\x7f]/.test(readFileSync(file, 'latin1')))
      throw new Error(`${file} is not pure ASCII: V8 would hold it as a two-byte string`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const started = Date.now();
  await bundle();
  console.error(`bundled ${Object.keys(entries).join(', ')} and the CLI (kbatch) into dist/ in ${Date.now() - started} ms`);
}

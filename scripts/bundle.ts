/**
 * Bundles each deployable function (and the one-process server) for dist/, and the CLI.
 *
 * Layout (what the image ships, see the Dockerfile):
 * - dist/main.cjs: lib/http/main.ts and everything it imports (every route, client-node, ...) in ONE
 *   CommonJS bundle, shared by the functions and the server;
 * - dist/main.cjs.cache: V8's code cache for it, made by a warm-up run at the end of the build;
 * - dist/submit.mjs, jobs.mjs, uploads.mjs, server.mjs: each entry (functions/NAME/index.ts,
 *   server.ts) as written, with its import of lib/http/main.ts replaced by a loader that runs
 *   main.cjs through the code cache (lib/http/code-cache.ts). So each still registers its
 *   functions-framework target before its import resolves, and `node dist/jobs.mjs` serves.
 * Why: parsing and compiling the 4 MB bundle, not running it, was most of a cold start; a code cache
 * made after a warm-up skips both (bench/startup.ts). CommonJS because only a classic script can
 * be compiled from a cache made after it ran (vm.Script); Node's ESM compile cache holds the top
 * level only.
 * The CLI is bundled too, into dist/kbatch.mjs, which bin/kbatch.mjs runs: no TypeScript is
 * compiled when a user runs kbatch.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { build, type Plugin } from 'esbuild';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { isBuiltin } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import standalone from 'ajv/dist/standalone/index.js';
import { codeCacheEnv } from '../lib/http/code-cache.ts';
import { JobSpecSchema, UpstreamCronJobSchema, UpstreamJobSchema } from '../lib/jobs/schemas.ts';
import { createAjv, schemaKey } from '../lib/jobs/validation.ts';

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
    // What a run of the CLI costs beyond Node's own start: 90 ms of CPU to 60 (`kbatch --version`,
    // bench/startup.ts measures `kbatch job list`): a third of the source to read and parse, and
    // neither tr46's table nor Node's built-in undici to load.
    minifyWhitespace: true,
    minifySyntax: true,
    plugins: [nodeUrlForWhatwgUrl, builtinsByRequire],
  });
}

/**
 * Node's built-in modules by require(), not by ESM import: an ESM import of node:http makes Node build
 * the module's ESM facade, which reads every export, and three of them (WebSocket, MessageEvent,
 * CloseEvent) are getters that load Node's built-in undici, ~1 MB to compile on every run.
 */
const builtinsByRequire: Plugin = {
  name: 'builtins-by-require',
  setup(b) {
    b.onResolve({ filter: /^node:|^[a-z_]+$/ }, (args) =>
      isBuiltin(args.path) && args.namespace !== 'builtin' ? { path: args.path, namespace: 'builtin' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'builtin' }, (args) => ({
      contents: `module.exports = require(${JSON.stringify(args.path)});`,
      loader: 'js',
    }));
  },
};

/**
 * node-fetch 2 (the CLI's transport, under cross-fetch) imports whatwg-url, whose tr46 parses a
 * 300 KB Unicode table at load, and then uses it only where Node has no URL class
 * (`Url.URL || whatwgUrl.URL`): never on the Node versions the CLI runs on. Node's URL stands in.
 */
const nodeUrlForWhatwgUrl: Plugin = {
  name: 'node-url-for-whatwg-url',
  setup(b) {
    b.onResolve({ filter: /^whatwg-url$/ }, () => ({ path: 'whatwg-url', namespace: 'node-url' }));
    b.onLoad({ filter: /.*/, namespace: 'node-url' }, () => ({ contents: 'export default { URL: globalThis.URL };', loader: 'js' }));
  },
};

/** The request schemas the checkers validate (lib/jobs/spec.ts, lib/upstream/manifest.ts). */
const precompiledSchemas = [JobSpecSchema, UpstreamJobSchema, UpstreamCronJobSchema];

/**
 * The bundles' lib/jobs/precompiled-validators.ts: Ajv's standalone code for the request schemas,
 * made here by an Ajv with the checkers' options, so no process compiles a schema at run time (the
 * submit function's first submit paid ~75 ms of CPU for it). The code runs on the first lookup,
 * not at start: the jobs and uploads functions never validate a job.
 */
export function precompiledValidatorsSource(): string {
  const ajv = createAjv({ code: { source: true } });
  const names: Record<string, string> = {};
  for (const schema of precompiledSchemas) {
    const key = schemaKey(schema);
    ajv.addSchema(schema as object, key);
    names[`v${key}`] = key;
  }
  return [
    'let validators;',
    'function load() {',
    '  const exports = {};',
    // The package is CommonJS: its default import is module.exports, which also has .default.
    standalone.default(ajv, names),
    '  return exports;',
    '}',
    'export function precompiledValidator(key) {',
    '  validators ??= load();',
    '  return validators[`v${key}`];',
    '}',
  ].join('\n');
}

const precompiledValidators: Plugin = {
  name: 'precompiled-validators',
  setup(b) {
    const file = resolve(root, 'lib/jobs/precompiled-validators.ts');
    b.onResolve({ filter: /\/precompiled-validators\.ts$/ }, (args) =>
      resolve(args.resolveDir, args.path) === file ? { path: file, namespace: 'precompiled-validators' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'precompiled-validators' }, () => ({
      contents: precompiledValidatorsSource(),
      loader: 'js',
      resolveDir: root,
    }));
  },
};

/** The shared bundle and its code cache, next to the entries in dist/. */
export const mainBundle = 'main.cjs';
export const mainCodeCache = 'main.cjs.cache';

/**
 * In the entries' build: their import of lib/http/main.ts becomes the cached load of dist/main.cjs,
 * which must be built first: its hash is written into each entry and at the head of the cache.
 */
const mainThroughCodeCache = (mainHash: string): Plugin => ({
  name: 'main-through-code-cache',
  setup(b) {
    const main = resolve(root, 'lib/http/main.ts');
    b.onResolve({ filter: /\/http\/main\.ts$/ }, (args) =>
      resolve(args.resolveDir, args.path) === main ? { path: main, namespace: 'cached-main' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'cached-main' }, () => ({
      resolveDir: root,
      loader: 'ts',
      contents: [
        "import { loadWithCodeCache } from './lib/http/code-cache.ts';",
        "import type * as Main from './lib/http/main.ts';",
        `const loaded = loadWithCodeCache(new URL('./${mainBundle}', import.meta.url), new URL('./${mainCodeCache}', import.meta.url), '${mainHash}') as typeof Main;`,
        'export const main = loaded.main;',
        'export const isMainModule = loaded.isMainModule;',
      ].join('\n'),
    }));
  },
});

export async function bundle(outdir = resolve(root, 'dist'), options: { warm?: boolean } = {}): Promise<void> {
  rmSync(outdir, { recursive: true, force: true });
  await bundleCli(resolve(outdir, 'kbatch.mjs'));
  const common = {
    bundle: true,
    platform: 'node',
    target: 'node24',
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
  } as const;
  await build({
    ...common,
    entryPoints: [resolve(root, 'lib/http/main.ts')],
    outfile: resolve(outdir, mainBundle),
    format: 'cjs',
    plugins: [precompiledValidators],
    // CommonJS has no import.meta: give the code that reads it the bundle's own (dist/ is where the
    // per-function ESM bundles were too).
    banner: {
      // "use strict" first: a banner before esbuild's own would make it a plain string, not a directive.
      js: "'use strict'; const __kbatchMetaUrl = require('node:url').pathToFileURL(__filename).href;",
    },
    define: { 'import.meta.url': '__kbatchMetaUrl', 'import.meta.dirname': '__dirname', 'import.meta.filename': '__filename' },
  }).then((result) => {
    // Anything else esbuild warns about in a CommonJS bundle (another import.meta field, a top-level
    // await) would break the functions at run time: stop the build instead.
    if (result.warnings.length) throw new Error(`${mainBundle}: ${result.warnings.map((w) => w.text).join('; ')}`);
  });
  await build({
    ...common,
    entryPoints: Object.fromEntries(Object.entries(entries).map(([name, file]) => [name, resolve(root, file)])),
    outdir,
    outExtension: { '.js': '.mjs' },
    format: 'esm',
    splitting: false,
    plugins: [
      mainThroughCodeCache(
        createHash('sha256')
          .update(readFileSync(resolve(outdir, mainBundle)))
          .digest('hex'),
      ),
    ],
  });
  for (const name of ['kbatch.mjs', mainBundle, ...Object.keys(entries).map((name) => `${name}.mjs`)]) {
    const file = resolve(outdir, name);
    if (/[^\x00-\x7f]/.test(readFileSync(file, 'latin1')))
      throw new Error(`${file} is not pure ASCII: V8 would hold it as a two-byte string`);
  }
  if (options.warm ?? true) await warmCodeCache(outdir);
}

/**
 * One stand-in for the Hub (`GET /hub/api/user`: alice) and the Kubernetes API (every other path: a
 * Namespace), for the warm-up here and for bench/startup.ts. Returns its base URL and a kubeconfig.
 */
export async function startStandIn(dir: string): Promise<{ server: Server; url: string; kubeconfig: string }> {
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    if (req.url?.startsWith('/hub/api/user'))
      res.end(JSON.stringify({ kind: 'user', name: 'alice', groups: [], admin: false, scopes: ['access:services'] }));
    else res.end(JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: req.url?.split('/').pop(), annotations: {} } }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "${url}", insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n`,
  );
  return { server, url, kubeconfig };
}

/**
 * What the warm-up asks, in order, each of a freshly started function: the jobs function's first
 * authenticated answer (what bench/startup.ts times), then a submit the schema refuses, so the
 * submit path up to validation, Ajv's compiler included, is in the cache too.
 */
const warmUpSteps: { entry: string; method: string; path: string; body?: string; status: number }[] = [
  { entry: 'jobs.mjs', method: 'GET', path: 'authorized', status: 200 },
  {
    entry: 'submit.mjs',
    method: 'POST',
    path: 'api/v1/jobs',
    body: JSON.stringify({ name: 'warm-up', image: 'busybox', resources: { limits: { cpu: 'lots' } } }),
    status: 400,
  },
];

/**
 * Fills dist/main.cjs.cache: starts each warm-up step's function as production does (`node
 * dist/NAME.mjs`, no extra flags: V8 rejects a cache made under other flags) against the stand-in,
 * asks it its question, and lets it write the cache at exit (each step starts from the cache the
 * one before wrote, so the last holds them all); then starts the jobs function once more and fails
 * the build if V8 does not accept that cache.
 */
async function warmCodeCache(outdir: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kbatch-warm-'));
  const standIn = await startStandIn(dir);
  const run = async (step: (typeof warmUpSteps)[number], mode: 'write' | 'check') => {
    const child = spawn(process.execPath, [resolve(outdir, step.entry)], {
      env: {
        PATH: process.env.PATH,
        HOME: dir,
        PORT: '0',
        KBATCH_HOST: '127.0.0.1',
        KBATCH_BACKEND: 'kubernetes',
        KUBECONFIG: standIn.kubeconfig,
        JUPYTERHUB_API_URL: `${standIn.url}/hub/api`,
        KBATCH_PREFIX: '/services/kbatch/',
        [codeCacheEnv]: mode,
      },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      const port = await new Promise<number>((ok, fail) => {
        child.once('message', (m: { port: number }) => ok(m.port));
        void exited.then((code) => fail(new Error(`warm-up of the code cache: ${step.entry} exited with ${code}: ${stderr.trim()}`)));
      });
      const response = await fetch(`http://127.0.0.1:${port}/services/kbatch/${step.path}`, {
        method: step.method,
        headers: { authorization: 'token t', 'content-type': 'application/json' },
        body: step.body,
      });
      if (response.status !== step.status)
        throw new Error(`warm-up of the code cache: ${step.method} /${step.path} answered ${response.status}: ${await response.text()}`);
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  };
  try {
    for (const step of warmUpSteps) await run(step, 'write');
    if (!existsSync(resolve(outdir, mainCodeCache))) throw new Error('warm-up of the code cache: no cache written');
    await run(warmUpSteps[0]!, 'check');
  } finally {
    standIn.server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const started = Date.now();
  await bundle();
  console.error(`bundled ${Object.keys(entries).join(', ')} and the CLI (kbatch) into dist/ in ${Date.now() - started} ms`);
}

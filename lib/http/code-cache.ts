import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';

/**
 * Set by the build (scripts/bundle.ts), never in production: `write` writes the cache at exit (the
 * warm-up run); `check` fails the start when the cache is missing or V8 rejects it, so a build or a
 * bench never ships or measures a cache that does nothing.
 */
export const codeCacheEnv = 'KBATCH_CODE_CACHE';

/**
 * Runs a CommonJS bundle with V8's code cache and returns its exports.
 *
 * Why not Node's own compile cache (NODE_COMPILE_CACHE / module.enableCompileCache): it stores each
 * module's code as compiled at load, before it runs, so every function compiled lazily while the
 * modules evaluate and the first request is served (esbuild's module initialisers, client-node's
 * model classes, the auth and backend paths) is compiled again at every start; that saved ~20% of
 * the bundle's cold start. A cache created AFTER a warm-up run (`Script#createCachedData` at exit)
 * holds those functions too, and cut the cold start to the first authenticated answer by ~half
 * (bench/startup.ts). The cache is made at build time by the same node binary that runs it (the
 * Dockerfile copies it from the build stage); V8 rejects a cache from another V8 version, other
 * flags or another source, and then the bundle simply compiles as without one.
 */
export function loadWithCodeCache(bundleUrl: URL, cacheUrl: URL, sourceHash: string): unknown {
  const file = fileURLToPath(bundleUrl);
  const cacheFile = fileURLToPath(cacheUrl);
  // V8 checks a cache against the source's length only, so the cache starts with the bundle's hash,
  // which the build also wrote into the entry that calls this: a cache from another build is never
  // used, at no cost at start (no hashing of 4 MB).
  const header = Buffer.from(`${sourceHash}\n`);
  let cachedData: Buffer | undefined;
  let stale = false;
  try {
    const stored = readFileSync(cacheFile);
    if (stored.subarray(0, header.length).equals(header)) cachedData = stored.subarray(header.length);
    else stale = true;
  } catch {
    // No cache (a build without the warm-up): compile as usual.
  }
  // The build keeps the bundle pure ASCII (scripts/bundle.ts), so latin1 reads it as is, without UTF-8 decoding.
  const source = readFileSync(file, 'latin1');
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: file,
    cachedData,
  });
  const mode = process.env[codeCacheEnv];
  if (mode === 'check' && (!cachedData || script.cachedDataRejected))
    throw new Error(
      `${cacheFile}: ${cachedData ? 'V8 rejected the code cache' : stale ? 'the code cache is from another build' : 'no code cache'}`,
    );
  // At exit, so the cache holds what the warm-up compiled, not only the top level.
  if (mode === 'write') process.once('exit', () => writeFileSync(cacheFile, Buffer.concat([header, script.createCachedData()])));
  const module = { exports: {} as unknown };
  const run = script.runInThisContext() as (...args: unknown[]) => void;
  run(module.exports, createRequire(file), module, file, dirname(file));
  return module.exports;
}

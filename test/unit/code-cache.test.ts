/**
 * lib/http/code-cache.ts: a CommonJS bundle run through a V8 code cache made after a warm-up run
 * (what dist/*.mjs do with dist/main.cjs). Each start is its own process, as in production.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

const root = resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'kbatch-code-cache-'));
process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
const bundleFile = join(dir, 'main.cjs');
const cacheFile = join(dir, 'main.cjs.cache');
const runner = join(dir, 'run.mts');
writeFileSync(
  runner,
  "import { createHash } from 'node:crypto';\nimport { readFileSync } from 'node:fs';\n" +
    `import { loadWithCodeCache } from ${JSON.stringify(pathToFileURL(join(root, 'lib/http/code-cache.ts')).href)};\n` +
    `const bundle = new URL(${JSON.stringify(pathToFileURL(bundleFile).href)});\n` +
    // The build writes the bundle's hash into the entry; here the runner computes it.
    `const hash = createHash('sha256').update(readFileSync(bundle)).digest('hex');\n` +
    `const loaded = loadWithCodeCache(bundle, new URL(${JSON.stringify(pathToFileURL(cacheFile).href)}), hash) as { answer(): string };\n` +
    'console.log(loaded.answer());\n',
);
const bundleSource = (answer: string) =>
  `const path = require('node:path');\nexports.answer = () => [${JSON.stringify(answer)}, path.basename(__filename), typeof module.exports].join(' ');\n`;

/** One start of the bundle, as its own process; `mode` is KBATCH_CODE_CACHE. */
function start(mode?: 'write' | 'check') {
  const result = spawnSync(process.execPath, ['--import', 'tsx', runner], {
    env: { PATH: process.env.PATH, HOME: dir, ...(mode ? { KBATCH_CODE_CACHE: mode } : {}) },
    encoding: 'utf8',
  });
  return { code: result.status, stdout: result.stdout.trim(), stderr: result.stderr };
}

const cache = suite('a bundle run through a code cache made after a warm-up run');
cache('runs as CommonJS (exports, require, module, __filename) without any cache', () => {
  rmSync(cacheFile, { force: true });
  writeFileSync(bundleFile, bundleSource('one'));
  assert.equal(start(), { code: 0, stdout: 'one main.cjs object', stderr: '' });
});
cache('a warm-up run writes the cache at exit, and the next start accepts it', () => {
  writeFileSync(bundleFile, bundleSource('two'));
  assert.is(start('write').code, 0);
  const checked = start('check');
  assert.is(checked.code, 0, checked.stderr);
  assert.is(checked.stdout, 'two main.cjs object');
});
cache('a cache from another build is never used, even for a source of the same length (all V8 checks)', () => {
  writeFileSync(bundleFile, bundleSource('six'));
  assert.is(start().stdout, 'six main.cjs object');
  const checked = start('check');
  assert.is.not(checked.code, 0);
  assert.match(checked.stderr, /the code cache is from another build/);
});
cache('the check fails when there is no cache at all', () => {
  rmSync(cacheFile, { force: true });
  const checked = start('check');
  assert.is.not(checked.code, 0);
  assert.match(checked.stderr, /no code cache/);
});
cache.run();

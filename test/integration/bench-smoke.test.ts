/**
 * The bench (bench/run.ts) with tiny sizes: it starts its own cluster, Hub, server and kbatch-proxy and
 * must print its table with every target measured. Timings are not asserted here; they live in bench/.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { resolve } from 'node:path';
import { runProgram } from './helpers.ts';

const root = resolve(import.meta.dirname, '../..');

test('npm run bench -- --smoke measures ours, kbatch-proxy and the floor on one stack', async () => {
  const run = await runProgram([process.execPath, '--import', 'tsx', 'bench/run.ts', '--smoke'], {
    env: process.env,
    cwd: root,
    timeoutMs: 240_000,
  });
  assert.is(run.code, 0, run.stderr.slice(-3000));
  for (const row of [
    'submit p50, sequential',
    'list throughput',
    'log fetch',
    'log follow',
    'Kubernetes API calls per submit',
    'idle RSS',
    'upload of',
  ]) {
    assert.ok(run.stdout.includes(row), `missing row "${row}" in:\n${run.stdout}`);
  }
  for (const target of ['ours (native API)', 'kbatch-proxy 0.5.0b1', 'floor (bare API calls)'])
    assert.ok(run.stdout.includes(target), target);
  assert.not.match(run.stderr, /submit errors|list errors/);
});

test.run();

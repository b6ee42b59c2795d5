/**
 * Runs every uvu suite (unit first, then integration against the real stack) each in its own
 * process, and ends with one plain "N passed, N failed" line that CI reads.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname);
const only = process.argv.slice(2);
const groups = ['unit', 'integration'];
const skipIntegration = process.env.KBATCH_SKIP_INTEGRATION === '1';
// Every suite's temporary files (clusters, venv-free Hub state, uploads, logs) land in one
// directory per run: removed after a green run, kept and named after a red one.
const runTmp = mkdtempSync(join(tmpdir(), 'kbatch-test-run-'));
const childEnv = { ...process.env, TMPDIR: runTmp };

interface Result {
  file: string;
  passed: number;
  failed: number;
  skipped: number;
  code: number | null;
  seconds: number;
}

/**
 * No suite file may take longer than this: a hung one (a server or stream that never ends) is killed
 * and counted as failed, so CI reports it instead of running into its own time limit.
 */
const fileTimeoutMs = Number(process.env.KBATCH_TEST_FILE_TIMEOUT_SECONDS ?? 600) * 1000;

function runFile(file: string): Promise<Result> {
  const started = Date.now();
  return new Promise((resolveResult) => {
    const child = spawn(process.execPath, ['--import', 'tsx', file], { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv, detached: true });
    const timer = setTimeout(() => {
      process.stderr.write(`\n### ${file}: no end after ${fileTimeoutMs / 1000}s; killed\n`);
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }, fileTimeoutMs);
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      process.stdout.write(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => process.stderr.write(chunk));
    child.on('close', (code) => {
      clearTimeout(timer);
      // uvu prints one summary per file; strip colours before reading it.
      const plain = output.replace(/\x1b\[[0-9;]*m/g, '');
      const sum = (label: string) => [...plain.matchAll(new RegExp(`${label}:\\s+(\\d+)`, 'g'))].reduce((n, m) => n + Number(m[1]), 0);
      const total = sum('Total');
      const passed = sum('Passed');
      const skipped = sum('Skipped');
      let failed = total - passed - skipped;
      // A crash before uvu's summary (or a failing before-hook) still counts as a failure.
      if (code !== 0 && failed === 0) failed = 1;
      resolveResult({ file, passed, failed, skipped, code, seconds: (Date.now() - started) / 1000 });
    });
  });
}

/** Builds (or finds cached) what the integration suites start: control-plane binaries and the Hub venv. */
function prepareStack(): void {
  const started = Date.now();
  for (const script of [
    'test/cluster/build.sh',
    'test/hub/setup.sh',
    'test/upstream/setup.sh',
    'test/upstream/proxy-setup.sh',
    'test/notebooks/setup.sh',
  ]) {
    if (!existsSync(join(root, '..', script))) continue;
    const result = spawnSync('bash', [join(root, '..', script)], { stdio: ['ignore', 'ignore', 'inherit'] });
    if (result.status !== 0) throw new Error(`${script} failed (exit ${result.status})`);
  }
  console.log(`### stack prepared in ${((Date.now() - started) / 1000).toFixed(1)}s`);
}

const results: Result[] = [];
for (const group of groups) {
  if (group === 'integration' && skipIntegration) continue;
  const dir = join(root, group);
  if (!existsSync(dir)) continue;
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.test.ts'))
    .filter((f) => !only.length || only.some((o) => f.includes(o)))
    .sort();
  if (group === 'integration' && files.length) prepareStack();
  for (const file of files) {
    console.log(`\n### ${group}/${file}`);
    results.push(await runFile(join(dir, file)));
  }
}

console.log('\n### summary');
for (const r of results)
  console.log(
    `${r.failed ? 'FAIL' : 'ok  '} ${r.file.slice(root.length + 1).padEnd(40)} ${r.passed} passed, ${r.failed} failed (${r.seconds.toFixed(1)}s)`,
  );
const passed = results.reduce((n, r) => n + r.passed, 0);
const failed = results.reduce((n, r) => n + r.failed, 0);
const skipped = results.reduce((n, r) => n + r.skipped, 0);
if (failed) console.log(`temporary files and logs of this run: ${runTmp}`);
else rmSync(runTmp, { recursive: true, force: true });
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed ? 1 : 0);

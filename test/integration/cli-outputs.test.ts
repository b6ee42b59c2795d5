/**
 * `kbatch job outputs` and `job delete --outputs`, from the compiled binary, through the whole
 * stack: JupyterHub's proxy, the one-process server on the Kubernetes backend, the API server's exec
 * into the user's volume helper, and KWOK running its commands in the namespace's work directory
 * (Cluster.execDir). KWOK runs no containers, so the test plays the job: it writes into
 * `<execDir>/outputs/<job>/`, where the job's /outputs mount would put the files.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { OutputList } from '../../lib/contract.ts';
import { bundleCli } from '../../scripts/bundle.ts';
import { startStack } from '../stack/stack.ts';
import { runProgram, type CliRun } from './helpers.ts';

const bin = resolve(import.meta.dirname, '../../bin/kbatch.mjs');
await bundleCli();
const MiB = 1024 * 1024;
const stack = await startStack({ KBATCH_VOLUME_HELPER_IDLE_SECONDS: '60' });
const [aliceDir] = await Promise.all([stack.cluster.execDir('kbatch-alice'), stack.cluster.execDir('kbatch-bob')]);
const home = mkdtempSync(join(tmpdir(), 'kbatch-cli-outputs-'));

function env(user: 'alice' | 'bob'): Record<string, string | undefined> {
  return {
    PATH: process.env.PATH,
    HOME: home,
    XDG_CONFIG_HOME: join(home, '.config'),
    KBATCH_URL: stack.serviceUrl,
    JUPYTERHUB_API_TOKEN: stack.hub.tokens[user],
  };
}

function kbatch(args: string[], options: { user?: 'alice' | 'bob'; cwd?: string } = {}): Promise<CliRun> {
  return runProgram([process.execPath, bin, ...args], { cwd: options.cwd ?? home, env: env(options.user ?? 'alice'), timeoutMs: 120_000 });
}

/** stdout straight into a file: the bytes of `--dest -`, unmangled by text decoding. */
function kbatchToFile(args: string[], file: string): Promise<{ code: number | null; stderr: string }> {
  const fd = openSync(file, 'w');
  const child = spawn(process.execPath, [bin, ...args], { cwd: home, env: env('alice'), stdio: ['ignore', fd, 'pipe'] });
  closeSync(fd);
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((done) => child.on('close', (code) => done({ code, stderr })));
}

function expectExit(run: CliRun, code: number): string {
  assert.is(run.code, code, `exit ${run.code}, expected ${code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  return run.stdout;
}

/** What the job "wrote": nested files, a 12 MiB random file, an odd name, and links out of the volume. */
const files: Record<string, Buffer> = {
  'big.bin': randomBytes(12 * MiB),
  'results/metrics.csv': Buffer.from('alpha,score\n0.1,0.93\n'),
  'results/deep/notes.md': Buffer.from('# notes\n'),
  'with space & caf\u00e9.txt': Buffer.from('odd name\n'),
};
let job = '';
let outputsDir = '';

const outputs = suite('kbatch job outputs through the Hub on Kubernetes');
outputs('a job runs and "writes" its outputs', async () => {
  const run = await kbatch(['job', 'submit', '--name', 'writer', '--image', 'busybox', '--command', '["true"]', '--wait']);
  job = expectExit(run, 0).trim().split('\n')[0]!;
  outputsDir = join(aliceDir, 'outputs', job);
  for (const [name, data] of Object.entries(files)) {
    mkdirSync(dirname(join(outputsDir, name)), { recursive: true });
    writeFileSync(join(outputsDir, name), data);
  }
  symlinkSync('/etc/passwd', join(outputsDir, 'passwd'));
});
outputs('--list shows every file with a human size, then the count and total; -o json is the OutputList', async () => {
  const table = expectExit(await kbatch(['job', 'outputs', job, '--list']), 0);
  assert.match(table, /^PATH\s+SIZE\s+MODIFIED$/m);
  assert.match(table, /^big\.bin\s+12\.0 MiB\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/m);
  assert.match(table, /^results\/metrics\.csv\s+21 B\s/m);
  assert.match(table, /^4 files, 12\.0 MiB$/m);
  const list = JSON.parse(expectExit(await kbatch(['job', 'outputs', job, '-o', 'json']), 0)) as OutputList;
  assert.is(list.job, job);
  assert.equal(
    list.files.map((f) => [f.path, f.size]),
    Object.keys(files)
      .sort()
      .map((name) => [name, files[name]!.length]),
  );
});
outputs('one file comes down byte-identical, named after its basename, with no .part left', async () => {
  const dest = mkdtempSync(join(home, 'one-'));
  const out = expectExit(await kbatch(['job', 'outputs', job, 'results/metrics.csv', '--dest', dest]), 0);
  assert.is(out, `downloaded results/metrics.csv (21 B) to ${join(dest, 'metrics.csv')}\n`);
  assert.equal(readdirSync(dest), ['metrics.csv']);
  assert.ok(readFileSync(join(dest, 'metrics.csv')).equals(files['results/metrics.csv']!));
  const odd = expectExit(await kbatch(['job', 'outputs', job, 'with space & caf\u00e9.txt', '--dest', dest]), 0);
  assert.match(odd, /downloaded with space & café\.txt/);
  assert.ok(readFileSync(join(dest, 'with space & caf\u00e9.txt')).equals(files['with space & caf\u00e9.txt']!));
});
outputs('a .part left by an interrupted run is resumed with a Range, not downloaded again', async () => {
  const dest = mkdtempSync(join(home, 'resume-'));
  const big = files['big.bin']!;
  writeFileSync(join(dest, 'big.bin.part'), big.subarray(0, 5 * MiB + 123));
  const run = await kbatch(['job', 'outputs', job, 'big.bin', '--dest', dest]);
  expectExit(run, 0);
  // A restart from zero would say so on stderr (the server ignored the Range).
  assert.is(run.stderr, '');
  assert.equal(readdirSync(dest), ['big.bin']);
  assert.ok(readFileSync(join(dest, 'big.bin')).equals(big), 'byte-identical after the resume');
});
outputs("a .part of another file of that name (another job's) is not completed: it is caught and started over", async () => {
  const dest = mkdtempSync(join(home, 'other-'));
  writeFileSync(join(dest, 'big.bin.part'), randomBytes(3 * MiB));
  const run = await kbatch(['job', 'outputs', job, 'big.bin', '--dest', dest]);
  expectExit(run, 0);
  assert.match(run.stderr, /the partial download does not match big\.bin on the server .*; starting over/);
  assert.ok(readFileSync(join(dest, 'big.bin')).equals(files['big.bin']!));
});
outputs('--dest - writes the bytes to stdout', async () => {
  const file = join(home, 'stdout.bin');
  const run = await kbatchToFile(['job', 'outputs', job, 'big.bin', '--dest', '-'], file);
  assert.is(run.code, 0, run.stderr);
  assert.ok(readFileSync(file).equals(files['big.bin']!));
});
outputs('without PATH every file is unpacked into ./NAME/; the link is skipped with a warning', async () => {
  const cwd = mkdtempSync(join(home, 'all-'));
  const run = await kbatch(['job', 'outputs', job], { cwd });
  expectExit(run, 0);
  const dest = join(cwd, job);
  assert.is(run.stdout, `downloaded 4 files (12.0 MiB) to ${dest}\n`);
  for (const [name, data] of Object.entries(files)) assert.ok(readFileSync(join(dest, name)).equals(data), name);
  assert.not.ok(existsSync(join(dest, 'passwd')), 'the symlink was not recreated');
  assert.match(run.stderr, /skipped "\.\/passwd": a symlink; only files and directories are extracted/);
});
outputs('a symlink already in DEST is never written through', async () => {
  const dest = mkdtempSync(join(home, 'planted-'));
  const elsewhere = mkdtempSync(join(home, 'elsewhere-'));
  symlinkSync(elsewhere, join(dest, 'results'));
  const run = await kbatch(['job', 'outputs', job, '--dest', dest]);
  expectExit(run, 1);
  assert.equal(readdirSync(elsewhere), []);
  assert.ok(lstatSync(join(dest, 'results')).isSymbolicLink());
  assert.ok(readFileSync(join(dest, 'big.bin')).equals(files['big.bin']!), 'the other files were saved');
  assert.match(run.stderr, /refused "\.\/results\/metrics\.csv": "results" is a symlink in the destination, not a directory/);
});
outputs('another user gets a 404 for the same job name, and an unknown path is a 404 too', async () => {
  const bob = await kbatch(['job', 'outputs', job, '--list'], { user: 'bob' });
  expectExit(bob, 1);
  assert.match(bob.stderr, new RegExp(`outputs of job ${job} not found \\(HTTP 404`));
  const missing = await kbatch(['job', 'outputs', job, 'nope.txt', '--dest', home]);
  expectExit(missing, 1);
  assert.match(missing.stderr, /output "nope\.txt" of job .* not found/);
  assert.not.ok(existsSync(join(home, 'nope.txt.part')));
});
outputs('job delete keeps the outputs; --outputs then removes them, though the job is gone', async () => {
  assert.is(expectExit(await kbatch(['job', 'delete', job]), 0), `deleted job ${job}\n`);
  const list = JSON.parse(expectExit(await kbatch(['job', 'outputs', job, '-o', 'json']), 0)) as OutputList;
  assert.is(list.files.length, 4, 'the outputs outlive the job');
  assert.is(
    expectExit(await kbatch(['job', 'delete', job, '--outputs']), 0),
    `deleted the outputs of job ${job} (the job itself was already gone)\n`,
  );
  assert.not.ok(existsSync(outputsDir));
  const gone = await kbatch(['job', 'outputs', job, '--list']);
  expectExit(gone, 1);
  assert.match(gone.stderr, /not found/);
});
outputs('delete --outputs of a live job removes both at once', async () => {
  const other = expectExit(await kbatch(['job', 'submit', '--name', 'both', '--image', 'busybox', '--command', '["true"]', '--wait']), 0)
    .trim()
    .split('\n')[0]!;
  mkdirSync(join(aliceDir, 'outputs', other), { recursive: true });
  writeFileSync(join(aliceDir, 'outputs', other, 'x.txt'), 'x');
  assert.is(expectExit(await kbatch(['job', 'delete', other, '--outputs']), 0), `deleted job ${other} and its outputs\n`);
  assert.not.ok(existsSync(join(aliceDir, 'outputs', other)));
});

outputs.after(async () => {
  await stack.stop();
  rmSync(home, { recursive: true, force: true });
});
outputs.run();

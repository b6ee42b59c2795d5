/**
 * The real `kbatch` binary (bin/kbatch.mjs running the compiled bundle dist/kbatch.mjs, as a user
 * would) against the one-process server with the local backend: jobs run as local processes with
 * their code unpacked as the working directory, the same layout /code has in a pod.
 */
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bundleCli } from '../../scripts/bundle.ts';
import { freePort, startServer, type KbatchServer } from '../stack/server.ts';
import { runProgram, type CliRun } from './helpers.ts';

const repoRoot = resolve(import.meta.dirname, '../..');
const bin = join(repoRoot, 'bin', 'kbatch.mjs');
const python = process.env.KBATCH_TEST_PYTHON ?? 'python3';
const home = mkdtempSync(join(tmpdir(), 'kbatch-cli-home-'));
const configFile = join(home, '.config', 'kbatch', 'config.json');

type Run = CliRun;

/** Runs the CLI as a subprocess with a clean environment: no KBATCH_URL, no token, a fresh config home. */
function kbatch(args: string[], env: Record<string, string> = {}, cwd = home): Promise<Run> {
  return runProgram([process.execPath, bin, ...args], {
    cwd,
    env: { PATH: process.env.PATH, HOME: home, XDG_CONFIG_HOME: join(home, '.config'), ...env },
  });
}

function expectExit(run: Run, code: number): void {
  assert.is(run.code, code, `exit ${run.code}, expected ${code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
}

/**
 * A project directory: main.py at the top, a 5 MB file in a subdirectory, and things that must not
 * travel. The directory arrives as /code/<its name>/, so main.py reads its data next to itself.
 */
function makeProject(): string {
  const dir = mkdtempSync(join(tmpdir(), 'kbatch-cli-project-'));
  mkdirSync(join(dir, 'data', 'raw'), { recursive: true });
  writeFileSync(join(dir, 'data', 'raw', 'blob.bin'), randomBytes(5 * 1024 * 1024));
  writeFileSync(
    join(dir, 'main.py'),
    [
      'import os',
      'here = os.path.dirname(__file__)',
      'data = open(os.path.join(here, "data", "raw", "blob.bin"), "rb").read()',
      'print("read", len(data), "bytes from data/raw/blob.bin")',
      'print("git uploaded:", os.path.exists(os.path.join(here, ".git")))',
      'print("env:", os.environ.get("GREETING"))',
    ].join('\n') + '\n',
  );
  mkdirSync(join(dir, '.git'));
  writeFileSync(join(dir, '.git', 'HEAD'), 'ref: refs/heads/main\n');
  mkdirSync(join(dir, '__pycache__'));
  writeFileSync(join(dir, '__pycache__', 'main.cpython-312.pyc'), 'x');
  return dir;
}

const threeLines = ['-u', '-c', 'import time\nfor i in range(1, 4):\n    print("line", i, flush=True)\n    time.sleep(0.6)\n'];

let server: KbatchServer | undefined;
let startError: unknown;
let submitted = '';

const cli = suite('the kbatch CLI against a real server');
cli.before(async () => {
  try {
    // The binary runs the bundle: build it from the sources under test.
    await bundleCli();
    server = await startServer({
      KBATCH_BACKEND: 'local',
      KBATCH_AUTH: 'none',
      KBATCH_LOCAL_DIR: mkdtempSync(join(tmpdir(), 'kbatch-cli-local-')),
    });
  } catch (error) {
    startError = error;
  }
});
// uvu swallows errors thrown in `before`; rethrowing here makes a failed start fail every test visibly.
cli.before.each(() => {
  if (startError) throw startError;
});
cli.after(async () => {
  await server?.stop();
});

cli('configure checks the server and writes an owner-only config file', async () => {
  const run = await kbatch(['configure', '--url', server!.url.replace(/\/$/, ''), '--token', 'local-token']);
  expectExit(run, 0);
  assert.match(run.stdout, /Logged in to http:\/\/127\.0\.0\.1:\d+\/services\/kbatch\/ as \S+ \(namespace kbatch-/);
  assert.is(statSync(configFile).mode & 0o777, 0o600);
  assert.equal(JSON.parse(readFileSync(configFile, 'utf8')), { kbatch_url: server!.url, token: 'local-token' });
});

cli('login URL does the same', async () => {
  const run = await kbatch(['login', server!.url]);
  expectExit(run, 0);
  assert.equal(JSON.parse(readFileSync(configFile, 'utf8')), { kbatch_url: server!.url, token: null });
});

cli(
  'submit --code uploads a directory as /code/my-dir/ (run as python my-dir/main.py) and --wait exits 0 when the job succeeds',
  async () => {
    const project = makeProject();
    const run = await kbatch([
      'job',
      'submit',
      '--name',
      'cli-code',
      '--image',
      'python:3.12',
      '--code',
      project,
      '--command',
      JSON.stringify([python, `${basename(project)}/main.py`]),
      '-e',
      'GREETING=hi there',
      '--wait',
    ]);
    expectExit(run, 0);
    submitted = run.stdout.trim();
    assert.match(submitted, /^cli-code-[a-z0-9]{5}$/, 'stdout is just the job name');
    assert.match(run.stderr, /not uploading .*\.git\//);
    assert.match(run.stderr, /job cli-code-\w+ succeeded/);
  },
);

cli('job list shows it', async () => {
  const run = await kbatch(['job', 'list']);
  expectExit(run, 0);
  assert.match(run.stdout, /^NAME +STATE +CREATED +DURATION +IMAGE$/m);
  assert.match(run.stdout, new RegExp(`^${submitted} +succeeded +\\d+s ago +\\S+ +python:3\\.12$`, 'm'));
});

cli("job show -o json is the server's JobDetail", async () => {
  const run = await kbatch(['job', 'show', submitted, '-o', 'json']);
  expectExit(run, 0);
  const job = JSON.parse(run.stdout);
  assert.is(job.name, submitted);
  assert.is(job.state, 'succeeded');
  assert.is(job.command[0], python);
  assert.match(job.command[1], /^kbatch-cli-project-\w+\/main\.py$/);
  assert.is(job.pods.length, 1);
  assert.is(job.pods[0].containers[0].exitCode, 0);
});

cli('job show without -o is a readable summary', async () => {
  const run = await kbatch(['job', 'show', submitted]);
  expectExit(run, 0);
  assert.match(run.stdout, /^State: +succeeded$/m);
  assert.match(run.stdout, /^Pods:$/m);
});

cli('job logs prints what main.py printed, reading the data file relative to its working directory', async () => {
  const run = await kbatch(['job', 'logs', submitted]);
  expectExit(run, 0);
  assert.is(run.stdout, `read ${5 * 1024 * 1024} bytes from data/raw/blob.bin\ngit uploaded: False\nenv: hi there\n`);
});

cli('job logs --follow streams every line and exits when the job ends', async () => {
  const submit = await kbatch(['job', 'submit', '-n', 'cli-follow', '--image', 'x', '--command', JSON.stringify([python, ...threeLines])]);
  expectExit(submit, 0);
  const name = submit.stdout.trim();
  const run = await kbatch(['job', 'logs', name, '--follow']);
  expectExit(run, 0);
  assert.is(run.stdout, 'line 1\nline 2\nline 3\n');
  const after = await kbatch(['job', 'show', name, '-o', 'json']);
  assert.is(JSON.parse(after.stdout).state, 'succeeded', 'the stream ended because the job did');
});

cli('job logs --timestamps prefixes each line with its time', async () => {
  const run = await kbatch(['job', 'logs', submitted, '--timestamps']);
  expectExit(run, 0);
  for (const line of run.stdout.trimEnd().split('\n')) assert.match(line, /^\d{4}-\d\d-\d\dT[\d:.]+Z \S/);
});

cli('submit --follow prints the name, then the logs, and exits 1 when the job fails', async () => {
  const script = 'import sys\nprint("about to fail", flush=True)\nsys.exit(3)\n';
  const run = await kbatch([
    'job',
    'submit',
    '-n',
    'cli-fails',
    '--image',
    'x',
    '--command',
    JSON.stringify([python, '-c', script]),
    '--follow',
  ]);
  expectExit(run, 1);
  assert.match(run.stdout, /^cli-fails-[a-z0-9]{5}\nabout to fail\n$/);
  assert.match(run.stderr, /job cli-fails-\w+ failed.*exit code 3/);
  const wait = await kbatch(['job', 'wait', run.stdout.split('\n')[0]!]);
  expectExit(wait, 1);
});

cli('submit -f reads a YAML job file; flags override it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kbatch-cli-yaml-'));
  writeFileSync(
    join(dir, 'job.yaml'),
    `name: cli-yaml\nimage: python:3.12\ncommand: [${python}, -c, "import os; print(os.environ['A'], os.environ['B'])"]\nenv: {A: from-file, B: from-file}\n`,
  );
  const run = await kbatch(['job', 'submit', '-f', join(dir, 'job.yaml'), '-e', 'B=from-flag', '-o', 'yaml', '--wait']);
  expectExit(run, 0);
  const name = /^name: (\S+)$/m.exec(run.stdout)![1]!;
  const logs = await kbatch(['job', 'logs', name]);
  assert.is(logs.stdout, 'from-file from-flag\n');
});

cli('job wait returns 0 for a job that already succeeded', async () => {
  const run = await kbatch(['job', 'wait', submitted, '--timeout', '30']);
  expectExit(run, 0);
  // The result line is where submit --wait puts it: stderr, so stdout stays for what scripts capture.
  assert.match(run.stderr, new RegExp(`^kbatch: job ${submitted} succeeded`, 'm'));
  assert.is(run.stdout, '');
});

cli('job delete removes the job; show afterwards exits 1 with "not found"', async () => {
  const run = await kbatch(['job', 'delete', submitted]);
  expectExit(run, 0);
  assert.is(run.stdout, `deleted job ${submitted}\n`);
  const show = await kbatch(['job', 'show', submitted]);
  expectExit(show, 1);
  assert.match(show.stderr, new RegExp(`^kbatch: job ${submitted} not found`), show.stderr);
  assert.not.match(show.stderr, /\n\s+at /);
});

cli('profiles and version talk to the server', async () => {
  const profiles = await kbatch(['profiles', '-o', 'json']);
  expectExit(profiles, 0);
  assert.equal(JSON.parse(profiles.stdout), {});
  const version = await kbatch(['version']);
  expectExit(version, 0);
  assert.match(version.stdout, /^kbatch \d+\.\d+\.\d+\nserver \S+ at http/);
});

cli('cronjob suspend on the local backend, which runs no schedules, says it is not available here', async () => {
  const run = await kbatch(['cronjob', 'suspend', 'nightly-abcde']);
  expectExit(run, 1);
  assert.match(
    run.stderr,
    /^kbatch: not available on this server \(HTTP 501\): cronjob schedules are not run by the local backend$/m,
    run.stderr,
  );
});

cli('usage errors exit 2 without touching the server', async () => {
  for (const args of [
    ['job', 'list', '--no-such-flag'],
    ['job', 'submit', '-n', 'x', '--image', 'x', '--command', 'python main.py'],
    ['job', 'submit', '--image', 'x'],
    ['job', 'logs'],
    ['jbos'],
  ]) {
    const run = await kbatch(args);
    expectExit(run, 2);
    assert.match(run.stderr, /^kbatch: /);
    assert.is(run.stdout, '');
  }
});

cli('an unreachable URL says so, in one line, exit 1', async () => {
  const url = `http://127.0.0.1:${await freePort()}/services/kbatch/`;
  const run = await kbatch(['job', 'list'], { KBATCH_URL: url });
  expectExit(run, 1);
  assert.match(run.stderr, new RegExp(`^kbatch: cannot reach kbatch at ${url.replace(/[.]/g, '\\.')} \\(ECONNREFUSED\\)`), run.stderr);
});

cli('KBATCH_URL overrides the config file, --url overrides both', async () => {
  const dead = `http://127.0.0.1:${await freePort()}/`;
  const viaEnv = await kbatch(['job', 'list'], { KBATCH_URL: dead });
  expectExit(viaEnv, 1);
  const viaFlag = await kbatch(['job', 'list', '--url', server!.url], { KBATCH_URL: dead });
  expectExit(viaFlag, 0);
});

cli('without its bundle the binary says how to build it, instead of compiling TypeScript', async () => {
  const checkout = mkdtempSync(join(tmpdir(), 'kbatch-cli-unbuilt-'));
  mkdirSync(join(checkout, 'bin'));
  copyFileSync(bin, join(checkout, 'bin', 'kbatch.mjs'));
  const run = await runProgram([process.execPath, join(checkout, 'bin', 'kbatch.mjs'), 'job', 'list'], {
    cwd: checkout,
    env: { PATH: process.env.PATH },
  });
  expectExit(run, 1);
  assert.match(run.stderr, /^kbatch: the CLI is not built \(.*dist\/kbatch\.mjs is missing\)\nhint: run npm run build in /);
});

cli.run();

/**
 * The real `kbatch` binary (the compiled bundle) through the whole stack: JupyterHub's proxy, the
 * one-process server on the Kubernetes backend as the kbatch identity, and the control plane with
 * KWOK running the pods.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bundleCli } from '../../scripts/bundle.ts';
import { startServer, type KbatchServer } from '../stack/server.ts';
import { serverSettings, startStack } from '../stack/stack.ts';
import { readTar } from '../../lib/uploads/archive.ts';
import { adminClients, eventually, runProgram, type CliRun } from './helpers.ts';

const bin = resolve(import.meta.dirname, '../../bin/kbatch.mjs');
// The binary runs the bundle: build it from the sources under test.
await bundleCli();
// The per-pod CPU maximum is raised above what the fake node has (1000 cores), so a job can be
// valid for kbatch and still unschedulable: that is what `job show` must explain.
const extraSettings = {
  KBATCH_MAX_JOB_RESOURCES: JSON.stringify({ cpu: '5000', memory: '256Gi', 'ephemeral-storage': '100Gi', 'nvidia.com/gpu': '8' }),
};
const stack = await startStack(extraSettings);
/** The server started again by the restart test; the stack only knows the first one. */
let restarted: KbatchServer | undefined;
const admin = adminClients(stack.cluster.adminKubeconfig);
const home = mkdtempSync(join(tmpdir(), 'kbatch-cli-stack-'));

type Run = CliRun;

function cliEnv(env: Record<string, string>): Record<string, string | undefined> {
  return { PATH: process.env.PATH, HOME: home, XDG_CONFIG_HOME: join(home, '.config'), ...env };
}

function kbatch(args: string[], env: Record<string, string> = {}, cwd = home): Promise<Run> {
  return runProgram([process.execPath, bin, ...args], { cwd, env: cliEnv(env), timeoutMs: 90_000 });
}

/** A CLI still running (a wait, a watch), to interrupt as Ctrl-C would: SIGINT to the process. */
function startKbatch(
  args: string[],
  env: Record<string, string> = {},
): { child: ChildProcess; output: () => { stdout: string; stderr: string }; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [bin, ...args], { cwd: home, env: cliEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exit = new Promise<number | null>((done) => child.on('close', (code) => done(code)));
  return { child, output: () => ({ stdout, stderr }), exit };
}

function expectExit(run: Run, code: number): string {
  assert.is(run.code, code, `exit ${run.code}, expected ${code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  return run.stdout;
}

function project(): string {
  // Inside the home the teardown removes.
  const dir = mkdtempSync(join(home, 'code-'));
  mkdirSync(join(dir, 'pkg'));
  writeFileSync(join(dir, 'main.py'), 'from pkg import util\nprint(util.X)\n');
  writeFileSync(join(dir, 'pkg', 'util.py'), 'X = 1\n');
  return dir;
}

let name = '';
const cli = suite('kbatch CLI through the Hub on Kubernetes');
cli('login checks the token with the server and writes a private config', async () => {
  const out = expectExit(await kbatch(['login', stack.serviceUrl, '--token', stack.hub.tokens.alice]), 0);
  assert.match(out + '', /alice/);
  assert.is(statSync(join(home, '.config', 'kbatch', 'config.json')).mode & 0o777, 0o600);
});
cli('submit --code --wait uploads, runs on the cluster and waits for success', async () => {
  await stack.cluster.setLogs('kbatch-alice', ['1']);
  const code = project();
  const run = await kbatch([
    'job',
    'submit',
    '--name',
    'cli',
    '--image',
    'python:3.12',
    '--command',
    JSON.stringify(['python', `${basename(code)}/main.py`]),
    '--code',
    code,
    '--env',
    'MODE=test',
    '--cpu',
    '500m',
    '--wait',
  ]);
  name = expectExit(run, 0).trim().split('\n')[0]!;
  assert.match(name, /^cli-[a-z0-9]{5}$/);
  const job = await admin.batch.readNamespacedJob({ name, namespace: 'kbatch-alice' });
  const pod = job.spec!.template.spec!;
  assert.is(pod.containers[0]!.workingDir, '/code');
  assert.is(pod.containers[0]!.resources!.requests!.cpu, '500m');
  assert.is(pod.initContainers![0]!.name, 'unpack-code');
  assert.ok(job.status!.succeeded === 1);
});
cli('list, show and logs', async () => {
  assert.match(expectExit(await kbatch(['job', 'list']), 0), new RegExp(`${name}\\s+succeeded`));
  const shown = JSON.parse(expectExit(await kbatch(['job', 'show', name, '-o', 'json']), 0));
  assert.is(shown.name, name);
  assert.is(shown.pods[0].phase, 'Succeeded');
  assert.is(expectExit(await kbatch(['job', 'logs', name]), 0), '1\n');
});
cli('submit --follow streams the logs and exits when the pod finishes', async () => {
  await stack.cluster.setLogs('kbatch-alice', ['epoch 1', 'epoch 2']);
  const run = await kbatch(['job', 'submit', '--name', 'follow', '--image', 'busybox', '--command', '["true"]', '--follow']);
  const out = expectExit(run, 0);
  assert.match(out, /epoch 1\nepoch 2\n/);
});
cli('an array job makes one pod per index', async () => {
  const out = expectExit(
    await kbatch(['job', 'submit', '--name', 'arr', '--image', 'busybox', '--command', '["true"]', '--array', '3', '--wait']),
    0,
  );
  const job = out.trim().split('\n')[0]!;
  const pods = await admin.core.listNamespacedPod({ namespace: 'kbatch-alice', labelSelector: `batch.kubernetes.io/job-name=${job}` });
  assert.equal(pods.items.map((p) => p.metadata!.labels!['batch.kubernetes.io/job-completion-index']).sort(), ['0', '1', '2']);
});
cli("bob cannot see alice's job; carol is told about the missing scope", async () => {
  const asBob = await kbatch(['job', 'show', name], {
    JUPYTERHUB_API_TOKEN: stack.hub.tokens.bob,
    KBATCH_URL: stack.serviceUrl,
    XDG_CONFIG_HOME: join(home, 'none'),
  });
  expectExit(asBob, 1);
  assert.match(asBob.stderr, /not found/);
  const asCarol = await kbatch(['job', 'list'], {
    JUPYTERHUB_API_TOKEN: stack.hub.tokens.carol,
    KBATCH_URL: stack.serviceUrl,
    XDG_CONFIG_HOME: join(home, 'none'),
  });
  expectExit(asCarol, 1);
  assert.match(asCarol.stderr, /access:services!service=kbatch/);
});
cli("an upload over the server's limit is refused at once: exit 1 with the upload hint, no lingering connection", async () => {
  const dir = mkdtempSync(join(home, 'big-'));
  // 12 MiB that gzip cannot shrink, over the stack's 8 MiB upload limit.
  writeFileSync(join(dir, 'blob.bin'), randomBytes(12 * 1024 * 1024));
  const run = await kbatch(['job', 'submit', '--name', 'big', '--image', 'busybox', '--command', '["true"]', '--code', dir]);
  expectExit(run, 1);
  assert.match(run.stderr, /^kbatch: upload too large \(HTTP 413\)/m, run.stderr);
  assert.match(run.stderr, /^hint: leave large data out of --code/m);
  assert.ok(run.seconds < 20, `took ${run.seconds} s`);
});
cli('job wait rides out a restart of the kbatch server and reports the outcome', async () => {
  const job = expectExit(await kbatch(['job', 'submit', '--name', 'restart', '--image', 'busybox', '--command', '["true"]']), 0).trim();
  const waiting = kbatch(['job', 'wait', job]);
  await new Promise((r) => setTimeout(r, 1000));
  await stack.server.stop();
  // Down for longer than the wait's 2 s poll interval, so at least one poll meets the outage.
  await new Promise((r) => setTimeout(r, 2500));
  restarted = await startServer(
    { ...serverSettings, ...extraSettings, KUBECONFIG: stack.cluster.kbatchKubeconfig, JUPYTERHUB_API_URL: stack.hub.apiUrl },
    { port: stack.server.port },
  );
  const run = await waiting;
  expectExit(run, 0);
  assert.match(run.stderr, new RegExp(`^kbatch: job ${job} succeeded`, 'm'));
  assert.match(run.stderr, /^kbatch: wait interrupted \(.+\); resuming \(attempt 1\)$/m);
});
cli('delete removes the job; show then fails with not found', async () => {
  expectExit(await kbatch(['job', 'delete', name]), 0);
  const deadline = Date.now() + 30_000;
  let run: Run;
  do {
    run = await kbatch(['job', 'show', name]);
    if (run.code === 1) break;
    await new Promise((r) => setTimeout(r, 500));
  } while (Date.now() < deadline);
  expectExit(run, 1);
  assert.match(run.stderr, /not found/);
  assert.not.match(run.stderr, /at .*\.ts:\d+/, 'no stack trace');
});
cli.run();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const lines = (text: string) => text.trim().split('\n').filter(Boolean);

/** The files a job's code ConfigMap unpacks into /code, read back from the cluster. */
async function codeTree(job: string): Promise<string[]> {
  const read = await admin.batch.readNamespacedJob({ name: job, namespace: 'kbatch-alice' });
  const configMap = read.spec!.template.spec!.volumes!.map((v) => v.configMap?.name).find(Boolean);
  assert.ok(configMap, 'the code travels in a ConfigMap');
  const stored = await admin.core.readNamespacedConfigMap({ name: configMap!, namespace: 'kbatch-alice' });
  const archive = Buffer.from(Object.values(stored.binaryData!)[0]!, 'base64');
  return readTar(gunzipSync(archive), { maxBytes: 1e8, maxFiles: 1e4 })
    .map((e) => `${e.path.replace(/\/$/, '')}${e.type === 'directory' ? '/' : ''}`)
    .sort();
}

const founding = suite('the founding usage, verbatim, through the Hub');
let foundingJob = '';
founding('kbatch login URL (token from the environment)', async () => {
  const run = await kbatch(['login', stack.serviceUrl], {
    JUPYTERHUB_API_TOKEN: stack.hub.tokens.alice,
    XDG_CONFIG_HOME: join(home, 'login-only'),
  });
  assert.match(expectExit(run, 0), /Logged in to .* as alice/);
});
founding(
  'kbatch configure --kbatch-url=... --jupyterhub-url=... --token=... checks the token with the Hub and stores all three',
  async () => {
    const run = await kbatch([
      'configure',
      `--kbatch-url=${stack.serviceUrl.replace(/\/$/, '')}`,
      `--jupyterhub-url=${stack.hub.apiUrl}`,
      `--token=${stack.hub.tokens.alice}`,
    ]);
    const out = expectExit(run, 0);
    assert.match(out, /The Hub at .* knows the token as alice/);
    assert.match(out, /Wrote config to /);
    const saved = JSON.parse(readFileSync(join(home, '.config', 'kbatch', 'config.json'), 'utf8'));
    assert.is(saved.jupyterhub_url, `${stack.hub.apiUrl.replace(/\/$/, '')}/`);
    assert.is(saved.token, stack.hub.tokens.alice);
    const wrong = await kbatch(
      ['configure', `--kbatch-url=${stack.serviceUrl}`, `--jupyterhub-url=${stack.hub.apiUrl}`, '--token=not-a-token'],
      { XDG_CONFIG_HOME: join(home, 'wrong') },
    );
    expectExit(wrong, 1);
    assert.match(wrong.stderr, /HTTP 403|HTTP 401/);
  },
);
founding(
  "kbatch job submit --name=test --image=... --command='[\"sh\"]' --file=examples/script.sh --url=... --env='{...}' -o json: a masked summary; script.sh at /code/script.sh",
  async () => {
    const dir = mkdtempSync(join(home, 'founding-'));
    mkdirSync(join(dir, 'examples'));
    writeFileSync(join(dir, 'examples', 'script.sh'), 'echo hello from script\n');
    const run = await kbatch(
      [
        'job',
        'submit',
        '--name=test',
        '--image=busybox',
        '--command=["sh"]',
        '--args=["script.sh"]',
        '--file=examples/script.sh',
        `--url=${stack.serviceUrl}`,
        '--env={"SAS_TOKEN": "s3cret-sas"}',
        '-o',
        'json',
      ],
      {},
      dir,
    );
    const summary = JSON.parse(expectExit(run, 0));
    foundingJob = summary.name;
    assert.match(foundingJob, /^test-[a-z0-9]{5}$/);
    assert.equal(
      { image: summary.image, command: summary.command, env: summary.env, user: summary.user, code: summary.code },
      { image: 'busybox', command: ['sh'], env: { SAS_TOKEN: '***' }, user: 'alice', code: 'examples/script.sh' },
    );
    assert.is(summary.url, `${stack.serviceUrl}api/v1/jobs/${foundingJob}`);
    assert.not.match(run.stdout + run.stderr, /s3cret-sas/);
    assert.equal(await codeTree(foundingJob), ['script.sh']);
  },
);
founding('a directory my-dir is at /code/my-dir/', async () => {
  const code = project();
  const run = await kbatch([
    'job',
    'submit',
    '--name=dir',
    '--image=python:3.12',
    `--command=["python", "${basename(code)}/main.py"]`,
    `--code=${code}`,
  ]);
  const job = expectExit(run, 0).trim();
  assert.equal(await codeTree(job), [
    `${basename(code)}/`,
    `${basename(code)}/main.py`,
    `${basename(code)}/pkg/`,
    `${basename(code)}/pkg/util.py`,
  ]);
});
founding('kbatch jobs list and kbatch jobs show --job-id=...', async () => {
  assert.match(expectExit(await kbatch(['jobs', 'list']), 0), new RegExp(`^${foundingJob}\\s`, 'm'));
  const shown = expectExit(await kbatch(['jobs', 'show', `--job-id=${foundingJob}`]), 0);
  assert.match(shown, new RegExp(`^Name:\\s+${foundingJob}$`, 'm'));
  assert.match(shown, /^Env:\s+.*SAS_TOKEN/m);
  assert.not.match(shown, /s3cret-sas/);
});
founding('-o k8s is the raw Kubernetes Job, with no env value in it', async () => {
  const run = await kbatch(['job', 'show', foundingJob, '-o', 'k8s']);
  const job = JSON.parse(expectExit(run, 0));
  assert.equal([job.apiVersion, job.kind, job.metadata.name, job.metadata.namespace], ['batch/v1', 'Job', foundingJob, 'kbatch-alice']);
  assert.is(job.spec.template.spec.containers[0].workingDir, '/code');
  assert.not.match(run.stdout, /s3cret-sas/);
  const json = JSON.parse(expectExit(await kbatch(['job', 'show', foundingJob, '-o', 'json']), 0));
  assert.is(json.name, foundingJob, '-o json keeps its summary shape');
});
founding.run();

const pods = suite('kbatch pod list, show and logs');
pods("list a job's pods, show one, print its log", async () => {
  await stack.cluster.setLogs('kbatch-alice', ['pod line 1', 'pod line 2']);
  const job = expectExit(await kbatch(['job', 'submit', '-n', 'pods', '--image', 'busybox', '--command', '["true"]', '--wait']), 0).trim();
  const names = lines(expectExit(await kbatch(['pod', 'list', '--job-name', job, '-o', 'name']), 0));
  assert.is(names.length, 1);
  const pod = names[0]!;
  assert.match(pod, new RegExp(`^${job}-`));
  assert.match(expectExit(await kbatch(['pod', 'list']), 0), new RegExp(`^${pod}\\s+${job}\\s+Succeeded`, 'm'));
  const shown = expectExit(await kbatch(['pod', 'show', pod]), 0);
  assert.match(shown, new RegExp(`^Job:\\s+${job}$`, 'm'));
  assert.match(shown, /^Phase:\s+Succeeded$/m);
  assert.is(expectExit(await kbatch(['pod', 'logs', pod]), 0), 'pod line 1\npod line 2\n');
  const missing = await kbatch(['pod', 'show', 'no-such-pod']);
  expectExit(missing, 1);
  assert.match(missing.stderr, /pod no-such-pod not found/);
});
pods.run();

const cron = suite('kbatch cronjob submit, list, show, suspend, resume, run-now, delete');
cron('a cronjob with code is submitted, listed, shown, suspended, resumed, run now and deleted', async () => {
  const code = project();
  const name = expectExit(
    await kbatch([
      'cronjob',
      'submit',
      '-n',
      'nightly',
      '--image',
      'python:3.12',
      '--schedule',
      '0 2 * * *',
      '--code',
      code,
      '--command',
      `["python", "${basename(code)}/main.py"]`,
      '-e',
      'TOKEN=cron-secret',
    ]),
    0,
  ).trim();
  assert.match(name, /^nightly-[a-z0-9]{5}$/);
  assert.match(expectExit(await kbatch(['cronjob', 'list']), 0), new RegExp(`^${name}\\s+0 2 \\* \\* \\*\\s+no\\s`, 'm'));
  const shown = expectExit(await kbatch(['cronjobs', 'show', name]), 0);
  assert.match(shown, /^Schedule:\s+0 2 \* \* \*$/m);
  assert.match(shown, /^Env:\s+.*TOKEN/m);
  assert.not.match(shown, /cron-secret/);
  const raw = JSON.parse(expectExit(await kbatch(['cronjob', 'show', name, '-o', 'k8s']), 0));
  assert.equal([raw.kind, raw.spec.schedule], ['CronJob', '0 2 * * *']);
  assert.is(expectExit(await kbatch(['cronjob', 'suspend', name]), 0), `cronjob ${name} suspended\n`);
  assert.match(expectExit(await kbatch(['cronjob', 'list']), 0), new RegExp(`^${name}\\s+0 2 \\* \\* \\*\\s+yes\\s`, 'm'));
  assert.ok((await admin.batch.readNamespacedCronJob({ name, namespace: 'kbatch-alice' })).spec!.suspend);
  assert.is(expectExit(await kbatch(['cronjob', 'resume', name]), 0), `cronjob ${name} resumed\n`);
  assert.not.ok((await admin.batch.readNamespacedCronJob({ name, namespace: 'kbatch-alice' })).spec!.suspend);
  const run = await kbatch(['cronjob', 'run-now', name, '--wait']);
  const started = expectExit(run, 0).trim();
  assert.match(started, new RegExp(`^${name}-manual-[a-z0-9]{5}$`));
  assert.match(run.stderr, new RegExp(`kbatch: job ${started} succeeded`));
  const manual = await admin.batch.readNamespacedJob({ name: started, namespace: 'kbatch-alice' });
  assert.is(manual.metadata!.ownerReferences![0]!.kind, 'CronJob');
  assert.is(manual.spec!.template.spec!.containers[0]!.workingDir, '/code');
  assert.is(expectExit(await kbatch(['cronjob', 'delete', name]), 0), `deleted cronjob ${name}\n`);
  await eventually('the cronjob to be gone', async () => !(await kbatch(['cronjob', 'list', '-o', 'name'])).stdout.includes(name));
});
cron.run();

const finding = suite('finding, waiting, watching, deleting');
let pending = '';
finding('job show says why a job is pending: no node has the CPU it asks for (the fake node has 1000 cores)', async () => {
  pending = expectExit(
    await kbatch(['job', 'submit', '-n', 'huge', '--image', 'busybox', '--command', '["true"]', '--cpu', '2000', '-l', 'kind=huge']),
    0,
  ).trim();
  const shown = await eventually(
    'a FailedScheduling event',
    async () => {
      const text = expectExit(await kbatch(['job', 'show', pending]), 0);
      return /FailedScheduling/.test(text) && text;
    },
    60_000,
    1000,
  );
  // Shown in the test log: the README quotes it.
  console.error(`[cli-stack] kbatch job show ${pending}:\n${shown}`);
  assert.match(shown, /^State:\s+pending$/m);
  assert.match(shown, /^Why:\s+no node can run it yet: 0\/1 nodes are available: 1 Insufficient cpu/m);
  assert.match(shown, /^Requests:\s+cpu=2(k|000)$/m);
  assert.match(shown, /^Events:$/m);
});
finding('job list --state and -l choose jobs; -A is refused', async () => {
  const pendingOnly = lines(expectExit(await kbatch(['job', 'list', '--state', 'pending', '-o', 'name']), 0));
  assert.ok(pendingOnly.includes(pending), pendingOnly.join(','));
  const succeeded = lines(expectExit(await kbatch(['job', 'list', '--state', 'succeeded', '-o', 'name']), 0));
  assert.not.ok(succeeded.includes(pending));
  assert.equal(lines(expectExit(await kbatch(['job', 'list', '-l', 'kind=huge', '-o', 'name']), 0)), [pending]);
  const all = await kbatch(['job', 'list', '-A']);
  expectExit(all, 2);
  assert.match(all.stderr, /--all-pages/);
});
finding('job wait on a pipe is quiet, and Ctrl-C says the job keeps running and how to resume', async () => {
  const waiting = startKbatch(['job', 'wait', pending]);
  await sleep(2500);
  waiting.child.kill('SIGINT');
  assert.is(await waiting.exit, 130);
  const { stdout, stderr } = waiting.output();
  assert.is(stdout, '');
  assert.not.match(stderr, /\r/, 'no progress line when piped');
  assert.match(stderr, new RegExp(`job ${pending} keeps running`));
  assert.match(stderr, new RegExp(`resume with kbatch job wait ${pending}`));
  const shown = expectExit(await kbatch(['job', 'show', pending, '-o', 'json']), 0);
  assert.is(JSON.parse(shown).state, 'pending', 'the job was not touched');
});
finding('Ctrl-C on job logs --follow says the same, with the follow to resume', async () => {
  const following = startKbatch(['job', 'logs', pending, '--follow']);
  await sleep(2500);
  following.child.kill('SIGINT');
  assert.is(await following.exit, 130);
  const { stderr } = following.output();
  assert.match(stderr, new RegExp(`job ${pending} keeps running`));
  assert.match(stderr, new RegExp(`resume with kbatch job logs ${pending} --follow`));
});
finding('job wait on a terminal shows live progress: state, pods of N, elapsed', async () => {
  const job = expectExit(await kbatch(['job', 'submit', '-n', 'tty', '--image', 'busybox', '--command', '["true"]']), 0).trim();
  // `script` gives the CLI a pseudo-terminal, as a user's shell would.
  const command = [process.execPath, bin, 'job', 'wait', job].map((w) => `'${w}'`).join(' ');
  const run = await runProgram(['script', '-qefc', command, '/dev/null'], {
    cwd: home,
    env: { ...cliEnv({}), TERM: 'xterm' },
    timeoutMs: 60_000,
  });
  expectExit(run, 0);
  assert.match(run.stdout, new RegExp(`\\r\\x1b\\[Kjob ${job}: (pending|running) · pods: \\d running, 0 succeeded, 0 failed of 1 · \\d+s`));
  assert.match(run.stdout, new RegExp(`kbatch: job ${job} succeeded`));
});
finding('job list --watch prints a job as it appears and changes; Ctrl-C stops only the watch', async () => {
  const watch = startKbatch(['job', 'list', '--watch'], { KBATCH_WATCH_INTERVAL_MS: '500' });
  await eventually('the first table', async () => /^NAME\s+STATE/m.test(watch.output().stdout), 20_000);
  const job = expectExit(await kbatch(['job', 'submit', '-n', 'watched', '--image', 'busybox', '--command', '["true"]']), 0).trim();
  await eventually('the watch to show it succeed', async () => new RegExp(`^${job}\\s+succeeded`, 'm').test(watch.output().stdout), 60_000);
  watch.child.kill('SIGINT');
  assert.is(await watch.exit, 130);
  assert.match(watch.output().stdout, new RegExp(`^${job}\\s+(pending|running)`, 'm'), 'the new job appeared before it finished');
  assert.match(watch.output().stderr, /stopped watching/);
});
finding('job delete takes several names; -l and --all need --yes when nobody can confirm', async () => {
  const a = expectExit(
    await kbatch(['job', 'submit', '-n', 'del', '--image', 'busybox', '--command', '["true"]', '-l', 'batch=del']),
    0,
  ).trim();
  const b = expectExit(
    await kbatch(['job', 'submit', '-n', 'del', '--image', 'busybox', '--command', '["true"]', '-l', 'batch=del']),
    0,
  ).trim();
  const c = expectExit(await kbatch(['job', 'submit', '-n', 'del', '--image', 'busybox', '--command', '["true"]']), 0).trim();
  const refused = await kbatch(['job', 'delete', '--all']);
  expectExit(refused, 2);
  assert.match(refused.stderr, /refusing to delete \d+ jobs .* without confirmation/);
  assert.match(refused.stderr, /--yes/);
  assert.is(
    expectExit(await kbatch(['job', 'delete', '-l', 'batch=del', '--yes']), 0)
      .split('\n')
      .filter(Boolean)
      .sort()
      .join(','),
    [`deleted job ${a}`, `deleted job ${b}`].sort().join(','),
  );
  assert.is(expectExit(await kbatch(['job', 'delete', c, pending]), 0), `deleted job ${c}\ndeleted job ${pending}\n`);
});
finding.run();

const help = suite('help that helps, from the installed binary');
help('did you mean, for a command and for a flag', async () => {
  const command = await kbatch(['jbo', 'list']);
  expectExit(command, 2);
  assert.match(command.stderr, /unknown command "jbo" \(did you mean "job"\?\)/);
  const flag = await kbatch(['job', 'submit', '--imag', 'x']);
  expectExit(flag, 2);
  assert.match(flag.stderr, /did you mean --image\?/);
  assert.match(flag.stderr, /^hint: run kbatch job submit --help$/m);
});
help('kbatch completion bash completes commands and flags in a real bash', async () => {
  const binDir = mkdtempSync(join(home, 'bin-'));
  writeFileSync(join(binDir, 'kbatch'), `#!/bin/sh\nexec '${process.execPath}' '${bin}' "$@"\n`);
  chmodSync(join(binDir, 'kbatch'), 0o755);
  const script =
    'source <(kbatch completion bash); COMP_WORDS=(kbatch job su); COMP_CWORD=2; _kbatch; echo "${COMPREPLY[@]}"; COMP_WORDS=(kbatch job submit --filen); COMP_CWORD=3; _kbatch; echo "${COMPREPLY[@]}"';
  const run = await runProgram(['bash', '-c', script], { cwd: home, env: { PATH: `${binDir}:${process.env.PATH}`, HOME: home } });
  assert.is(expectExit(run, 0), 'submit\n--filename\n');
});
help.run();

const teardown = suite('teardown');
teardown('stops the stack', async () => {
  await restarted?.stop();
  await stack.stop();
  rmSync(home, { recursive: true, force: true });
});
teardown.run();

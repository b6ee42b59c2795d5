/**
 * Wire compatibility with the upstream Python `kbatch` CLI (PyPI `kbatch`, pinned in
 * test/upstream/setup.sh): the unmodified CLI runs as a subprocess against the real stack, through
 * the Hub's proxy, exactly as a user in a notebook would run it.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { resetPeakRss } from '../../bench/lib.ts';
import { startStack } from '../stack/stack.ts';
import { adminClients, eventually } from './helpers.ts';

const setup = (...version: string[]) =>
  execFileSync('bash', [resolve(import.meta.dirname, '../upstream/setup.sh'), ...version], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
const venv = setup();
/** 0.4.2, the newest stable release and what most users have: its `pod logs POD` asks `jobs/logs/POD/`. */
const venv042 = setup('0.4.2');
const MiB = 1024 * 1024;
/** The server's temporary directory, where an upstream body's code is spooled while it streams in. */
const spoolDir = mkdtempSync(join(tmpdir(), 'kbatch-upstream-cli-tmp-'));
/** The spool's directories (tsx keeps its own cache there too). */
const spooled = () => readdirSync(spoolDir).filter((name) => name.startsWith('kbatch-upload-'));
const stack = await startStack({ KBATCH_MAX_UPLOAD_BYTES: String(32 * MiB), TMPDIR: spoolDir });
const admin = adminClients(stack.cluster.adminKubeconfig);
const aliceNs = 'kbatch-alice';
const work = mkdtempSync(join(tmpdir(), 'kbatch-upstream-cli-'));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `kbatch ARGS` with a private config dir; never throws, so tests can assert on failures. */
function kbatch(
  args: string[],
  options: { token?: string; configHome?: string; env?: Record<string, string>; timeoutMs?: number; venv?: string } = {},
): Promise<Run> {
  const configHome = options.configHome ?? join(work, 'config-env-only');
  mkdirSync(configHome, { recursive: true });
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: work,
    XDG_CONFIG_HOME: configHome,
    KBATCH_URL: stack.serviceUrl,
    JUPYTERHUB_API_TOKEN: options.token ?? stack.hub.tokens.alice,
    // rich: plain output, wide enough that table cells (job names, timestamps) are never wrapped.
    COLUMNS: '250',
    NO_COLOR: '1',
    TERM: 'dumb',
    ...options.env,
  };
  return new Promise((done) => {
    execFile(
      join(options.venv ?? venv, 'bin/kbatch'),
      args,
      { env, timeout: options.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        done({ code, stdout, stderr });
      },
    );
  });
}

function ok(run: Run, what: string): string {
  assert.is(run.code, 0, `${what} exited ${run.code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  assert.not.match(run.stderr, /Traceback/, `${what} printed a traceback: ${run.stderr}`);
  return run.stdout;
}

function noTraceback(run: Run) {
  assert.not.match(run.stdout + run.stderr, /Traceback/, `traceback:\n${run.stdout}\n${run.stderr}`);
}

/** A code directory with a file at the top and one in a subdirectory. */
function codeDir(): string {
  const dir = mkdtempSync(join(work, 'code-'));
  writeFileSync(join(dir, 'main.py'), 'from pkg import util\nprint("hello", util.X)\n');
  mkdirSync(join(dir, 'pkg'));
  writeFileSync(join(dir, 'pkg', 'util.py'), 'X = 1\n');
  return dir;
}

const command = '--command=["sh","-c","python main.py"]';
const logLines = ['upstream line 1', 'upstream line 2', 'upstream line 3'];
let jobName = '';
let podName = '';

// ---------------------------------------------------------------------------------------------
const configure = suite('configure and profiles');
configure('kbatch --version is the pinned upstream release', async () => {
  const version = ok(await kbatch(['--version']), 'kbatch --version');
  assert.match(version, /version \d+\.\d+/);
  console.error(`[upstream-cli] ${version.trim()} from ${venv}`);
});
configure('configure checks the credentials and writes its config file', async () => {
  const configHome = join(work, 'config-configured');
  const run = await kbatch(['configure', '--kbatch-url', stack.serviceUrl, '--token', stack.hub.tokens.alice], {
    configHome,
    env: { KBATCH_URL: '', JUPYTERHUB_API_TOKEN: '' },
  });
  const out = ok(run, 'configure');
  assert.match(out, /Wrote config to/);
  const config = JSON.parse(readFileSync(join(configHome, 'kbatch/config.json'), 'utf8'));
  assert.equal(config, { kbatch_url: stack.serviceUrl, token: stack.hub.tokens.alice });
  // The written config alone is enough for later commands.
  ok(
    await kbatch(['job', 'list', '-o', 'json'], { configHome, env: { KBATCH_URL: '', JUPYTERHUB_API_TOKEN: '' } }),
    'job list with the written config',
  );
});
configure('configure with a bad token fails cleanly with 401', async () => {
  const run = await kbatch(['configure', '--kbatch-url', stack.serviceUrl, '--token', 'not-a-token'], {
    configHome: join(work, 'config-bad'),
  });
  assert.is.not(run.code, 0);
});
configure('profiles prints the server profiles', async () => {
  const profiles = JSON.parse(ok(await kbatch(['profiles']), 'profiles'));
  assert.equal(Object.keys(profiles).sort(), ['gpu', 'small']);
  assert.is(profiles.small.image, 'python:3.12-slim');
  assert.equal(profiles.small.resources.requests, { cpu: '250m', memory: '256Mi' });
});
configure.run();

// ---------------------------------------------------------------------------------------------
const jobs = suite('job submit, list, show, pods, logs');
jobs('job submit with --code prints the generated name', async () => {
  await stack.cluster.setLogs(aliceNs, logLines);
  const out = ok(
    await kbatch(['job', 'submit', '--name=test', '--image=busybox', command, `--code=${codeDir()}`, '--env={"GREETING":"hi there"}']),
    'job submit',
  );
  jobName = out.trim();
  assert.match(jobName, /^test-[a-z0-9]+$/);
});
jobs('job list right after submit (pod pending) renders the table', async () => {
  const out = ok(await kbatch(['job', 'list']), 'job list');
  assert.match(out, /Jobs/);
  assert.ok(out.includes(jobName), out);
});
jobs('job list -o json has the upstream snake_case shape', async () => {
  const list = JSON.parse(ok(await kbatch(['job', 'list', '-o', 'json']), 'job list -o json'));
  const job = list.items.find((j: any) => j.metadata.name === jobName);
  assert.ok(job, JSON.stringify(list));
  assert.match(job.metadata.creation_timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$/);
  assert.ok('ready' in job.status && 'succeeded' in job.status && 'start_time' in job.status);
  assert.is(list.kind, 'JobList');
  assert.ok('_continue' in list.metadata, 'list metadata uses the Python client spelling');
});
jobs('job list survives a job that has not started (suspended: no start_time)', async () => {
  // Not submittable through kbatch; made directly, as another client or an admin could.
  const name = `suspended-${Date.now().toString(36)}`;
  await admin.batch.createNamespacedJob({
    namespace: aliceNs,
    body: {
      metadata: { name },
      spec: { suspend: true, template: { spec: { restartPolicy: 'Never', containers: [{ name: 'job', image: 'busybox' }] } } },
    },
  });
  try {
    const out = ok(await kbatch(['job', 'list']), 'job list');
    const row = out.split('\n').find((l) => l.includes(name));
    assert.ok(row && /pending/.test(row), out);
  } finally {
    await admin.batch.deleteNamespacedJob({ name, namespace: aliceNs, propagationPolicy: 'Background' });
  }
});
jobs('job show prints the Job as JSON', async () => {
  const job = JSON.parse(ok(await kbatch(['job', 'show', jobName]), 'job show'));
  assert.is(job.metadata.name, jobName);
  assert.is(job.metadata.namespace, aliceNs);
  assert.is(job.api_version, 'batch/v1');
  assert.is(job.spec.template.spec.containers[0].working_dir, '/code');
});
jobs('the created Job mounts the code ConfigMap and reads env from the user Secret', async () => {
  const job = await admin.batch.readNamespacedJob({ name: jobName, namespace: aliceNs });
  const pod = job.spec!.template.spec!;
  const container = pod.containers[0]!;
  assert.equal(container.command, ['sh', '-c', 'python main.py']);
  assert.is(container.image, 'busybox');
  assert.ok(
    container.volumeMounts!.some((m) => m.mountPath === '/code'),
    'code volume at /code',
  );
  // A job from the upstream wire format writes its outputs where any other does.
  assert.is(container.volumeMounts!.find((m) => m.mountPath === '/outputs')?.subPathExpr, 'outputs/$(KBATCH_JOB_NAME)');
  assert.is(container.env!.find((e) => e.name === 'KBATCH_OUTPUTS_DIR')?.value, '/outputs');
  const configMapName = pod.volumes!.map((v) => v.configMap?.name).find(Boolean);
  assert.ok(configMapName, `a ConfigMap volume: ${JSON.stringify(pod.volumes)}`);
  const configMap = await admin.core.readNamespacedConfigMap({ name: configMapName!, namespace: aliceNs });
  assert.ok(Object.keys(configMap.binaryData ?? {}).length > 0, 'the ConfigMap holds the code archive');
  assert.is(configMap.metadata!.ownerReferences?.[0]?.uid, job.metadata!.uid);
  assert.ok(pod.initContainers?.length, 'an init container unpacks the code');

  const greeting = container.env!.find((e) => e.name === 'GREETING')!;
  assert.ok(greeting.valueFrom?.secretKeyRef, `GREETING from a Secret: ${JSON.stringify(greeting)}`);
  assert.is(greeting.value, undefined);
  const secret = await admin.core.readNamespacedSecret({ name: greeting.valueFrom!.secretKeyRef!.name!, namespace: aliceNs });
  assert.is(Buffer.from(secret.data!.GREETING!, 'base64').toString(), 'hi there');
  assert.is(Buffer.from(secret.data!.JUPYTERHUB_API_TOKEN!, 'base64').toString(), stack.hub.tokens.alice);
  assert.is(secret.metadata!.ownerReferences?.[0]?.uid, job.metadata!.uid);
  assert.not.ok(JSON.stringify(job).includes('hi there'), 'env values stay out of the Job');
});
jobs('job logs --stream prints the lines and exits by itself when the pod finishes', async () => {
  const started = Date.now();
  const out = ok(await kbatch(['job', 'logs', jobName, '--stream'], { timeoutMs: 45_000 }), 'job logs --stream');
  for (const line of logLines) assert.ok(out.includes(line), `missing ${line} in ${out}`);
  assert.ok(Date.now() - started < 45_000);
});
jobs('pod list --job-name -o json eventually shows phase Succeeded', async () => {
  const pod = await eventually(
    'the pod to succeed',
    async () => {
      const list = JSON.parse(ok(await kbatch(['pod', 'list', '--job-name', jobName, '-o', 'json']), 'pod list'));
      assert.is(list.items.length, 1, JSON.stringify(list));
      return list.items[0].status.phase === 'Succeeded' ? list.items[0] : undefined;
    },
    30_000,
    1000,
  );
  podName = pod.metadata.name;
  assert.match(podName, new RegExp(`^${jobName}-`));
});
jobs('pod list (table and -o name) shows the pod', async () => {
  const table = ok(await kbatch(['pod', 'list', '--job-name', jobName]), 'pod list');
  assert.ok(table.includes(podName) && table.includes('Succeeded'), table);
  const names = ok(await kbatch(['pod', 'list', '-o', 'name']), 'pod list -o name');
  assert.ok(names.split('\n').includes(podName), names);
});
jobs('job list after the job succeeded renders it as done', async () => {
  const out = await eventually(
    'the job to be listed as done',
    async () => {
      const text = ok(await kbatch(['job', 'list']), 'job list');
      const row = text.split('\n').find((l) => l.includes(jobName));
      return row && /done/.test(row) ? text : undefined;
    },
    30_000,
    1000,
  );
  assert.ok(out.includes(jobName));
});
jobs('job logs prints the log lines', async () => {
  const out = ok(await kbatch(['job', 'logs', jobName]), 'job logs');
  for (const line of logLines) assert.ok(out.includes(line), `missing ${line} in ${out}`);
});
jobs('pod logs prints the log lines, with and without --stream', async () => {
  const out = ok(await kbatch(['pod', 'logs', podName]), 'pod logs');
  for (const line of logLines) assert.ok(out.includes(line), `missing ${line} in ${out}`);
  const streamed = ok(await kbatch(['pod', 'logs', podName, '--stream'], { timeoutMs: 30_000 }), 'pod logs --stream');
  for (const line of logLines) assert.ok(streamed.includes(line), `missing ${line} in ${streamed}`);
});
jobs("the 0.4.2 CLI's pod logs POD (a pod name on jobs/logs/) prints the pod's log, with and without --stream", async () => {
  const version = ok(await kbatch(['--version'], { venv: venv042 }), '0.4.2 --version');
  assert.match(version, /0\.4\.2/);
  const out = ok(await kbatch(['pod', 'logs', podName], { venv: venv042 }), '0.4.2 pod logs');
  for (const line of logLines) assert.ok(out.includes(line), `missing ${line} in ${out}`);
  const streamed = ok(await kbatch(['pod', 'logs', podName, '--stream'], { venv: venv042, timeoutMs: 30_000 }), '0.4.2 pod logs --stream');
  for (const line of logLines) assert.ok(streamed.includes(line), `missing ${line} in ${streamed}`);
  // A job's name on the same path is still that job's logs, and a name that is neither is still a 404.
  const viaJob = ok(await kbatch(['job', 'logs', jobName]), 'job logs');
  for (const line of logLines) assert.ok(viaJob.includes(line), `missing ${line} in ${viaJob}`);
  const missing = await kbatch(['pod', 'logs', 'no-such-pod'], { venv: venv042 });
  assert.is.not(missing.code, 0);
  assert.match(missing.stdout + missing.stderr, /404/);
});
jobs("bob's 0.4.2 CLI cannot read alice's pod log by its name", async () => {
  const run = await kbatch(['pod', 'logs', podName], { venv: venv042, token: stack.hub.tokens.bob });
  assert.is.not(run.code, 0);
  assert.match(run.stdout + run.stderr, /404/);
  for (const line of logLines) assert.not.ok(run.stdout.includes(line));
});
jobs('job submit --profile fills image and resources', async () => {
  const name = ok(
    await kbatch(['job', 'submit', '--name=prof', '--profile', 'small', '--command=["python","-c","print(1)"]']),
    'job submit --profile',
  ).trim();
  assert.match(name, /^prof-[a-z0-9]+$/);
  const job = await admin.batch.readNamespacedJob({ name, namespace: aliceNs });
  const container = job.spec!.template.spec!.containers[0]!;
  assert.is(container.image, 'python:3.12-slim');
  assert.equal(container.resources!.requests, { cpu: '250m', memory: '256Mi' });
  assert.equal(container.resources!.limits, { memory: '512Mi' });
});
jobs.run();

// ---------------------------------------------------------------------------------------------
const errors = suite('errors and isolation');
errors('an invalid name is a 400 from kbatch-proxy, not a traceback', async () => {
  const run = await kbatch(['job', 'submit', '--name=List-files', '--image=busybox', '--command=["ls"]']);
  assert.is(run.code, 1, `${run.stdout}\n${run.stderr}`);
  assert.match(run.stderr, /kbatch-proxy error 400: /);
  noTraceback(run);
});
errors("bob cannot see alice's job", async () => {
  const run = await kbatch(['job', 'show', jobName], { token: stack.hub.tokens.bob });
  assert.is(run.code, 1, `${run.stdout}\n${run.stderr}`);
  assert.match(run.stderr, /kbatch-proxy error 404: /);
  noTraceback(run);
});
errors('a token without the kbatch scope is refused with 403', async () => {
  const run = await kbatch(['job', 'list'], { token: stack.hub.tokens.carol });
  assert.is(run.code, 1, `${run.stdout}\n${run.stderr}`);
  assert.match(run.stderr, /kbatch-proxy error 403: /);
  noTraceback(run);
});
errors('job delete removes the job; show then says not found', async () => {
  ok(await kbatch(['job', 'delete', jobName]), 'job delete');
  const run = await eventually(
    'the job to be gone',
    async () => {
      const show = await kbatch(['job', 'show', jobName]);
      return show.code !== 0 ? show : undefined;
    },
    30_000,
    1000,
  );
  assert.is(run.code, 1);
  assert.match(run.stderr, /not found/);
  assert.match(run.stderr, /kbatch-proxy error 404: /);
  noTraceback(run);
});
errors.run();

// ---------------------------------------------------------------------------------------------
const cron = suite('cronjob submit, list, show, delete');
let cronName = '';
cron('cronjob submit with --code creates a CronJob that owns its Secret and code', async () => {
  const out = ok(
    await kbatch(['cronjob', 'submit', '--name=nightly', '--image=busybox', command, '--schedule=0 22 * * 1-5', `--code=${codeDir()}`]),
    'cronjob submit',
  );
  cronName = out.trim().split('\n').pop()!.trim();
  assert.match(cronName, /^nightly-cron-[a-z0-9]{5}$/);
  const cronJob = await admin.batch.readNamespacedCronJob({ name: cronName, namespace: aliceNs });
  assert.is(cronJob.spec!.schedule, '0 22 * * 1-5');
  const pod = cronJob.spec!.jobTemplate.spec!.template.spec!;
  assert.is(pod.containers[0]!.workingDir, '/code');
  const codeMap = pod.volumes!.find((v) => v.name === 'code-archive')!.configMap!.name!;
  for (const owned of [
    await admin.core.readNamespacedSecret({ name: cronName, namespace: aliceNs }),
    await admin.core.readNamespacedConfigMap({ name: codeMap, namespace: aliceNs }),
  ]) {
    assert.equal(
      owned.metadata!.ownerReferences!.map((o) => [o.kind, o.name]),
      [['CronJob', cronName]],
    );
  }
});
cron('cronjob list and show', async () => {
  assert.ok(ok(await kbatch(['cronjob', 'list']), 'cronjob list').includes(cronName));
  const shown = JSON.parse(ok(await kbatch(['cronjob', 'show', cronName]), 'cronjob show'));
  assert.is(shown.metadata.name, cronName);
  assert.is(shown.spec.schedule, '0 22 * * 1-5');
});
cron('bob cannot see it; an invalid schedule is a 400', async () => {
  assert.is((await kbatch(['cronjob', 'show', cronName], { token: stack.hub.tokens.bob })).code, 1);
  const run = await kbatch(['cronjob', 'submit', '--name=bad', '--image=busybox', command, '--schedule=every day']);
  assert.is(run.code, 1);
  assert.match(run.stderr, /kbatch-proxy error 400: .*schedule/);
  noTraceback(run);
});
cron('cronjob delete removes it', async () => {
  ok(await kbatch(['cronjob', 'delete', cronName]), 'cronjob delete');
  await eventually('the cronjob to be gone', async () => (await kbatch(['cronjob', 'show', cronName])).code === 1, 30_000, 1000);
});
cron.run();

// ---------------------------------------------------------------------------------------------
const large = suite('large code in the upstream JSON body (issue 10)');
function serverMemory(): { peakKb: number; rssKb: number } {
  const status = readFileSync(`/proc/${stack.server.process.pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)![1]);
  return { peakKb: field('VmHWM'), rssKb: field('VmRSS') };
}
large('24 MiB of incompressible code: streamed to disk, stored on the volume, server RSS bounded, no spool left', async () => {
  await stack.cluster.execDir(aliceNs);
  const dir = mkdtempSync(join(work, 'large-'));
  writeFileSync(join(dir, 'main.py'), 'print("large")\n');
  // A first large body sizes V8's heap and the buffer pools (once per process); the measure is the second's.
  writeFileSync(join(dir, 'data.bin'), randomBytes(6 * MiB));
  ok(await kbatch(['job', 'submit', '--name=warm', '--image=busybox', command, `--code=${dir}`], { timeoutMs: 120_000 }), 'warm-up submit');
  writeFileSync(join(dir, 'data.bin'), randomBytes(24 * MiB));
  await new Promise((r) => setTimeout(r, 1000));
  resetPeakRss(stack.server.process.pid!);
  const before = serverMemory();
  const out = ok(
    await kbatch(['job', 'submit', '--name=large', '--image=busybox', command, `--code=${dir}`], { timeoutMs: 120_000 }),
    'large submit',
  );
  const after = serverMemory();
  const growthMb = (after.peakKb - before.rssKb) / 1024;
  console.error(
    `[upstream-cli] 24 MiB code via the Python CLI (~32 MiB base64 JSON body): server RSS ${(before.rssKb / 1024).toFixed(0)} MB, peak ${(after.peakKb / 1024).toFixed(0)} MB (+${growthMb.toFixed(1)} MB)`,
  );
  const name = out.trim().split('\n').pop()!.trim();
  assert.match(name, /^large-[a-z0-9]+$/);
  const job = await admin.batch.readNamespacedJob({ name, namespace: aliceNs });
  const volumes = job.spec!.template.spec!.volumes ?? [];
  assert.ok(
    volumes.some((v) => v.persistentVolumeClaim),
    `code too large for a ConfigMap is mounted from the user's volume: ${JSON.stringify(volumes)}`,
  );
  // Bounded, not proportional to the bytes (buffering would be several times them). The goal's 32 MB
  // is measured by bench/ on the bundled server; this source-run server's garbage collector, under the
  // test load, lets freed chunks accumulate a little longer, so the guard leaves it some room.
  assert.ok(growthMb <= 64, `peak RSS grew by ${growthMb.toFixed(1)} MB during a 24 MiB upstream submit`);
  assert.equal(spooled(), [], 'no spooled body left');
});
large('code over the upload limit is refused (413) without a traceback, and leaves no spool', async () => {
  const dir = mkdtempSync(join(work, 'too-large-'));
  writeFileSync(join(dir, 'data.bin'), randomBytes(33 * MiB));
  const run = await kbatch(['job', 'submit', '--name=huge', '--image=busybox', command, `--code=${dir}`], { timeoutMs: 120_000 });
  assert.is(run.code, 1, `${run.stdout}\n${run.stderr}`);
  assert.match(run.stderr, /kbatch-proxy error 413: /);
  noTraceback(run);
  await eventually('the spool to be removed', async () => spooled().length === 0 || undefined, 10_000, 200);
});
large.run();

// ---------------------------------------------------------------------------------------------
const teardown = suite('teardown');
teardown('stop the stack', async () => {
  rmSync(work, { recursive: true, force: true });
  rmSync(spoolDir, { recursive: true, force: true });
  await stack.stop();
});
teardown.run();

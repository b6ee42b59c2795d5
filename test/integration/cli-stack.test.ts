/**
 * The real `kbatch` binary (the compiled bundle) through the whole stack: JupyterHub's proxy, the
 * one-process server on the Kubernetes backend as the kbatch identity, and the control plane with
 * KWOK running the pods.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bundleCli } from '../../scripts/bundle.ts';
import { startServer, type KbatchServer } from '../stack/server.ts';
import { serverSettings, startStack } from '../stack/stack.ts';
import { adminClients, runProgram, type CliRun } from './helpers.ts';

const bin = resolve(import.meta.dirname, '../../bin/kbatch.mjs');
// The binary runs the bundle: build it from the sources under test.
await bundleCli();
const stack = await startStack();
/** The server started again by the restart test; the stack only knows the first one. */
let restarted: KbatchServer | undefined;
const admin = adminClients(stack.cluster.adminKubeconfig);
const home = mkdtempSync(join(tmpdir(), 'kbatch-cli-stack-'));

type Run = CliRun;

function kbatch(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return runProgram([process.execPath, bin, ...args], { cwd: home, env: { PATH: process.env.PATH, HOME: home, XDG_CONFIG_HOME: join(home, '.config'), ...env }, timeoutMs: 90_000 });
}

function expectExit(run: Run, code: number): string {
  assert.is(run.code, code, `exit ${run.code}, expected ${code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  return run.stdout;
}

function project(): string {
  const dir = mkdtempSync(join(tmpdir(), 'kbatch-cli-stack-code-'));
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
  const run = await kbatch(['job', 'submit', '--name', 'cli', '--image', 'python:3.12', '--command', '["python","main.py"]', '--code', project(), '--env', 'MODE=test', '--cpu', '500m', '--wait']);
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
  const out = expectExit(await kbatch(['job', 'submit', '--name', 'arr', '--image', 'busybox', '--command', '["true"]', '--array', '3', '--wait']), 0);
  const job = out.trim().split('\n')[0]!;
  const pods = await admin.core.listNamespacedPod({ namespace: 'kbatch-alice', labelSelector: `batch.kubernetes.io/job-name=${job}` });
  assert.equal(pods.items.map((p) => p.metadata!.labels!['batch.kubernetes.io/job-completion-index']).sort(), ['0', '1', '2']);
});
cli('bob cannot see alice\'s job; carol is told about the missing scope', async () => {
  const asBob = await kbatch(['job', 'show', name], { JUPYTERHUB_API_TOKEN: stack.hub.tokens.bob, KBATCH_URL: stack.serviceUrl, XDG_CONFIG_HOME: join(home, 'none') });
  expectExit(asBob, 1);
  assert.match(asBob.stderr, /not found/);
  const asCarol = await kbatch(['job', 'list'], { JUPYTERHUB_API_TOKEN: stack.hub.tokens.carol, KBATCH_URL: stack.serviceUrl, XDG_CONFIG_HOME: join(home, 'none') });
  expectExit(asCarol, 1);
  assert.match(asCarol.stderr, /access:services!service=kbatch/);
});
cli('an upload over the server\'s limit is refused at once: exit 1 with the upload hint, no lingering connection', async () => {
  const dir = mkdtempSync(join(home, 'big-'));
  // 12 MiB that gzip cannot shrink, over the stack's 8 MiB upload limit.
  writeFileSync(join(dir, 'blob.bin'), randomBytes(12 * 1024 * 1024));
  const run = await kbatch(['job', 'submit', '--name', 'big', '--image', 'busybox', '--command', '["true"]', '--code', dir]);
  expectExit(run, 1);
  assert.match(run.stderr, /^kbatch: upload too large \(HTTP 413\)/m);
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
  restarted = await startServer({ ...serverSettings, KUBECONFIG: stack.cluster.kbatchKubeconfig, JUPYTERHUB_API_URL: stack.hub.apiUrl }, { port: stack.server.port });
  const run = await waiting;
  expectExit(run, 0);
  assert.match(run.stdout, new RegExp(`^job ${job} succeeded`));
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

const teardown = suite('teardown');
teardown('stops the stack', async () => {
  await restarted?.stop();
  await stack.stop();
  rmSync(home, { recursive: true, force: true });
});
teardown.run();

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalBackend } from '../../lib/backend/local.ts';
import { buildJobObjects } from '../../lib/k8s/builders.ts';
import { parseJobSpec } from '../../lib/k8s/spec.ts';
import { normalizeUpload } from '../../lib/uploads/archive.ts';
import { jobState } from '../../lib/views.ts';

const settings = { jobTtlSeconds: 3600, jobExtraEnv: {}, helperImage: 'busybox' };
const limits = { maxBytes: 1e8, maxFiles: 1e4 };

async function waitForEnd(backend: LocalBackend, ns: string, name: string) {
  for (let i = 0; i < 100; i++) {
    const job = await backend.getJob(ns, name);
    if (['succeeded', 'failed'].includes(jobState(job))) return job;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('job did not finish');
}

async function text(stream: NodeJS.ReadableStream): Promise<string> {
  let out = '';
  for await (const chunk of stream) out += chunk.toString();
  return out;
}

const local = suite('LocalBackend runs jobs as processes');
local('runs the command in /code-equivalent dir with the uploaded files and env', async () => {
  const backend = new LocalBackend(mkdtempSync(join(tmpdir(), 'kbatch-local-')));
  const upload = normalizeUpload([{ path: 'main.py', type: 'file', mode: 0o644, data: Buffer.from('import os\nprint("sum", 1+1, os.environ["GREETING"])\n') }], limits);
  const code = await backend.storeCode('alice', upload, new Date(Date.now() + 60_000));
  const objects = buildJobObjects(parseJobSpec({ name: 'py', image: 'python', command: ['python3', 'main.py'], env: { GREETING: 'hello' } }), { name: 'alice', namespace: 'kbatch-alice' }, 'py-aaaaa', { settings, profiles: {}, code });
  await backend.ensureNamespace({ metadata: { name: objects.namespace } });
  await backend.createJob(objects, code);
  const job = await waitForEnd(backend, objects.namespace, 'py-aaaaa');
  assert.is(jobState(job), 'succeeded');
  const [pod] = await backend.listPods(objects.namespace, { jobName: 'py-aaaaa' });
  assert.ok(pod);
  assert.is(await text(await backend.podLogs(objects.namespace, pod!.metadata!.name!, { follow: false }, new AbortController().signal)), 'sum 2 hello\n');
});
local('indexed arrays get JOB_COMPLETION_INDEX; failures respect backoffLimit', async () => {
  const backend = new LocalBackend(mkdtempSync(join(tmpdir(), 'kbatch-local-')));
  const objects = buildJobObjects(parseJobSpec({ name: 'arr', image: 'x', command: ['sh', '-c', 'echo index=$JOB_COMPLETION_INDEX; exit $((JOB_COMPLETION_INDEX == 2))'], completions: 3, parallelism: 3, backoffLimit: 1 }), { name: 'bob', namespace: 'kbatch-bob' }, 'arr-aaaaa', { settings, profiles: {} });
  await backend.ensureNamespace({ metadata: { name: objects.namespace } });
  await backend.createJob(objects, undefined);
  const job = await waitForEnd(backend, objects.namespace, 'arr-aaaaa');
  assert.is(jobState(job), 'failed');
  assert.is(job.status!.succeeded, 2);
  assert.is(job.status!.failed, 2, 'index 2 ran twice: once plus one retry');
});
local('follow streams lines as they come and ends with the process', async () => {
  const backend = new LocalBackend(mkdtempSync(join(tmpdir(), 'kbatch-local-')));
  const objects = buildJobObjects(parseJobSpec({ name: 'slow', image: 'x', command: ['sh', '-c', 'for i in 1 2 3; do echo line $i; sleep 0.3; done'] }), { name: 'bob', namespace: 'kbatch-bob' }, 'slow-aaaaa', { settings, profiles: {} });
  await backend.ensureNamespace({ metadata: { name: objects.namespace } });
  await backend.createJob(objects, undefined);
  await new Promise((r) => setTimeout(r, 100));
  const [pod] = await backend.listPods(objects.namespace);
  const started = Date.now();
  const out = await text(await backend.podLogs(objects.namespace, pod!.metadata!.name!, { follow: true }, new AbortController().signal));
  assert.is(out, 'line 1\nline 2\nline 3\n');
  assert.ok(Date.now() - started >= 500, 'the stream waited for the process');
});
local('delete kills the process and removes the job', async () => {
  const backend = new LocalBackend(mkdtempSync(join(tmpdir(), 'kbatch-local-')));
  const objects = buildJobObjects(parseJobSpec({ name: 'sleep', image: 'x', command: ['sleep', '30'] }), { name: 'bob', namespace: 'kbatch-bob' }, 'sleep-aaaaa', { settings, profiles: {} });
  await backend.ensureNamespace({ metadata: { name: objects.namespace } });
  await backend.createJob(objects, undefined);
  await new Promise((r) => setTimeout(r, 200));
  await backend.deleteJob(objects.namespace, 'sleep-aaaaa');
  await backend.getJob(objects.namespace, 'sleep-aaaaa').then(() => assert.unreachable(), (e) => assert.is(e.status, 404));
});
local.run();

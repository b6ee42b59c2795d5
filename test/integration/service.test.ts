/**
 * The kbatch service through the real stack: every request goes through JupyterHub's proxy to the
 * one-process server, which checks tokens with the Hub and runs jobs on the control plane + KWOK
 * as the low-privilege kbatch identity (knative/rbac.yaml).
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Deps } from '../../lib/api/deps.ts';
import { documentedPath } from '../../lib/api/openapi.ts';
import { apiRoutes } from '../../lib/app.ts';
import type { V1Job } from '@kubernetes/client-node';
import { KubernetesBackend } from '../../lib/backend/kubernetes.ts';
import { loadSettings } from '../../lib/config.ts';
import { toHttpError } from '../../lib/http/errors.ts';
import { jobSummary, newestFirst } from '../../lib/jobs/views.ts';
import { serverSettings, startStack } from '../stack/stack.ts';
import { startServer } from '../stack/server.ts';
import { adminClients, client, codeForm, eventually } from './helpers.ts';

const stack = await startStack();
const alice = client(stack.serviceUrl, stack.hub.tokens.alice);
const bob = client(stack.serviceUrl, stack.hub.tokens.bob);
const carol = client(stack.serviceUrl, stack.hub.tokens.carol);
const anonymous = client(stack.serviceUrl);
const admin = adminClients(stack.cluster.adminKubeconfig);
const aliceNs = 'kbatch-alice';

async function submit(spec: Record<string, unknown>) {
  const res = await alice('POST', 'api/v1/jobs', { json: { image: 'busybox', command: ['sh', '-c', 'echo hi'], ...spec } });
  assert.is(res.status, 201, res.text);
  return res.body.name as string;
}

async function waitForState(name: string, states: string[]) {
  return eventually(`job ${name} to reach ${states}`, async () => {
    const res = await alice('GET', `api/v1/jobs/${name}`);
    return states.includes(res.body.state) ? res.body : undefined;
  });
}

// ---------------------------------------------------------------------------------------------
const auth = suite('auth through the Hub');
auth("a request with alice's token reaches the server and resolves to alice", async () => {
  const res = await alice('GET', 'authorized');
  assert.is(res.status, 200);
  assert.equal(res.body, { name: 'alice', groups: [], namespace: 'kbatch-alice' });
});
auth('no token is 401 with a JSON message', async () => {
  const res = await anonymous('GET', 'api/v1/jobs');
  assert.is(res.status, 401);
  assert.match(res.body.detail, /Missing JupyterHub token/);
});
auth('a bad token is 401', async () => {
  const res = await client(stack.serviceUrl, 'not-a-token')('GET', 'api/v1/jobs');
  assert.is(res.status, 401);
});
auth('a valid token without the kbatch scope is 403', async () => {
  const res = await carol('GET', 'api/v1/jobs');
  assert.is(res.status, 403);
  assert.match(res.body.detail, /access:services!service=kbatch/);
});
auth('an expired token is 401', async () => {
  const token = await stack.hub.createToken('alice', { expiresIn: 1 });
  await new Promise((r) => setTimeout(r, 2100));
  assert.is((await client(stack.serviceUrl, token)('GET', 'authorized')).status, 401);
});
auth('an unreachable Hub is 503, not 500', async () => {
  const server = await startServer({
    KBATCH_BACKEND: 'kubernetes',
    KUBECONFIG: stack.cluster.kbatchKubeconfig,
    JUPYTERHUB_API_URL: 'http://127.0.0.1:9/hub/api',
  });
  try {
    const res = await client(server.url, 'whatever')('GET', 'api/v1/jobs');
    assert.is(res.status, 503);
    assert.match(res.body.detail, /JupyterHub API unreachable/);
  } finally {
    await server.stop();
  }
});
auth.run();

// ---------------------------------------------------------------------------------------------
const submitSuite = suite('submit');
submitSuite('creates the namespace, a Job and an owned env Secret', async () => {
  const name = await submit({ name: 'hello', env: { GREETING: 'hi there' }, labels: { team: 'ml' } });
  assert.match(name, /^hello-[a-z0-9]{5}$/);
  const ns = await admin.core.readNamespace({ name: aliceNs });
  assert.is(ns.metadata!.annotations!['kbatch.jupyter.org/username'], 'alice');
  const job = await admin.batch.readNamespacedJob({ name, namespace: aliceNs });
  const pod = job.spec!.template.spec!;
  assert.is(pod.containers[0]!.workingDir, '/code');
  assert.is(job.metadata!.labels!.team, 'ml');
  assert.is(job.metadata!.labels!['app.kubernetes.io/part-of'], 'kbatch-tests', 'admin template merged');
  assert.is(job.spec!.ttlSecondsAfterFinished, 3600);
  const secret = await admin.core.readNamespacedSecret({ name, namespace: aliceNs });
  assert.is(Buffer.from(secret.data!.GREETING!, 'base64').toString(), 'hi there');
  assert.is(Buffer.from(secret.data!.JUPYTERHUB_API_TOKEN!, 'base64').toString(), stack.hub.tokens.alice);
  assert.equal(
    secret.metadata!.ownerReferences!.map((o) => [o.kind, o.name, o.uid]),
    [['Job', name, job.metadata!.uid]],
  );
  assert.not.ok(JSON.stringify(job).includes('hi there'), 'env values stay out of the Job');
});
submitSuite('a profile fills image and resources', async () => {
  const name = await submit({ name: 'prof', image: undefined, profile: 'small' });
  const job = await admin.batch.readNamespacedJob({ name, namespace: aliceNs });
  const container = job.spec!.template.spec!.containers[0]!;
  assert.is(container.image, 'python:3.12-slim');
  assert.equal(container.resources!.requests, { cpu: '250m', memory: '256Mi' });
});
submitSuite('refusals are 400s naming the field, and create nothing', async () => {
  const before = (await admin.batch.listNamespacedJob({ namespace: aliceNs })).items.length;
  for (const [spec, field] of [
    [{ name: 'x', namespace: 'kube-system' }, 'namespace'],
    [{ name: 'x', serviceAccountName: 'default' }, 'serviceAccountName'],
    [{ name: 'x', hostNetwork: true }, 'hostNetwork'],
    [{ name: 'x', volumes: [{ hostPath: { path: '/' } }] }, 'volumes'],
    [{ name: 'Bad_Name' }, 'name'],
    [{ name: 'x', profile: 'nope' }, 'profile'],
    [{ name: 'x', command: 'python main.py' }, 'command'],
  ] as const) {
    const res = await alice('POST', 'api/v1/jobs', { json: { image: 'busybox', ...spec } });
    assert.is(res.status, 400, `${field}: ${res.text}`);
    assert.is(res.body.field, field);
  }
  const bad = await alice('POST', 'api/v1/jobs', { headers: { 'content-type': 'application/json' }, json: undefined });
  assert.is(bad.status, 400);
  assert.is((await admin.batch.listNamespacedJob({ namespace: aliceNs })).items.length, before);
});
submitSuite('a failed Job create leaves no Secret or ConfigMap behind', async () => {
  const secretsBefore = (await admin.core.listNamespacedSecret({ namespace: aliceNs })).items.length;
  const mapsBefore = (await admin.core.listNamespacedConfigMap({ namespace: aliceNs })).items.length;
  // Passes our validation, fails at the API server: a quota that admits no Job (limits below
  // requests, the former trigger, is now refused by the server's own validation first).
  const quota = { metadata: { name: 'no-jobs' }, spec: { hard: { 'count/jobs.batch': '0' } } };
  await admin.core.createNamespacedResourceQuota({ namespace: aliceNs, body: quota });
  try {
    await eventually(
      'the quota to be counted',
      async () => (await admin.core.readNamespacedResourceQuota({ namespace: aliceNs, name: 'no-jobs' })).status?.hard !== undefined,
    );
    const spec = { name: 'orphan', image: 'busybox', command: ['true'] };
    const res = await alice('POST', 'api/v1/jobs', { form: codeForm({ 'main.py': 'print(1)' }, spec) });
    assert.ok(res.status >= 400, res.text);
    assert.match(res.body.detail, /exceeded quota/);
    assert.is((await admin.core.listNamespacedSecret({ namespace: aliceNs })).items.length, secretsBefore);
    assert.is((await admin.core.listNamespacedConfigMap({ namespace: aliceNs })).items.length, mapsBefore);
  } finally {
    await admin.core.deleteNamespacedResourceQuota({ namespace: aliceNs, name: 'no-jobs' });
  }
});
submitSuite('multipart submit stores the code in a ConfigMap the Job owns and unpacks at /code', async () => {
  const res = await alice('POST', 'api/v1/jobs', {
    form: codeForm(
      { 'main.py': 'print("hello from code")', 'pkg/util.py': 'X = 1' },
      { name: 'withcode', image: 'python:3.12', command: ['python', 'main.py'] },
    ),
  });
  assert.is(res.status, 201, res.text);
  const job = await admin.batch.readNamespacedJob({ name: res.body.name, namespace: aliceNs });
  const pod = job.spec!.template.spec!;
  const archive = pod.volumes!.find((v) => v.name === 'code-archive')!.configMap!.name!;
  const configMap = await admin.core.readNamespacedConfigMap({ name: archive, namespace: aliceNs });
  assert.ok(configMap.binaryData!['code.tgz']);
  assert.is(configMap.metadata!.ownerReferences![0]!.uid, job.metadata!.uid);
  assert.equal(pod.initContainers![0]!.command, ['tar', '-xzf', '/code-archive/code.tgz', '-C', '/code']);
});
submitSuite.run();

// ---------------------------------------------------------------------------------------------
const uploads = suite('uploads');
uploads('an upload returns a signed reference a later submit can use', async () => {
  const up = await alice('POST', 'api/v1/uploads', { form: codeForm({ 'main.py': 'print(1)', 'data/a.csv': 'a,b\n1,2\n' }) });
  assert.is(up.status, 201, up.text);
  assert.is(up.body.files, 2);
  assert.is(up.body.storage, 'configmap');
  const res = await alice('POST', 'api/v1/jobs', {
    json: { name: 'fromref', image: 'python', command: ['python', 'main.py'], upload: up.body.upload },
  });
  assert.is(res.status, 201, res.text);
});
uploads("bob cannot use alice's upload reference, and a forged one is refused", async () => {
  const up = await alice('POST', 'api/v1/uploads', { form: codeForm({ 'main.py': 'print(1)' }) });
  const res = await bob('POST', 'api/v1/jobs', { json: { name: 'steal', image: 'python', upload: up.body.upload } });
  assert.is(res.status, 403);
  const forged = up.body.upload.replace(/\.[^.]+$/, '.AAAA');
  assert.is((await alice('POST', 'api/v1/jobs', { json: { name: 'forged', image: 'python', upload: forged } })).status, 400);
});
uploads('an expired, never-used upload is swept by the next upload', async () => {
  const up = await alice('POST', 'api/v1/uploads', { form: codeForm({ 'old.py': 'print(1)' }) });
  const name = (await admin.core.listNamespacedConfigMap({ namespace: aliceNs, labelSelector: 'kbatch.jupyter.org/upload' })).items.find(
    (c) => !c.metadata!.ownerReferences && c.metadata!.creationTimestamp,
  )!.metadata!.name!;
  assert.is(up.status, 201);
  await admin.core.patchNamespacedConfigMap(
    { name, namespace: aliceNs, body: { metadata: { annotations: { 'kbatch.jupyter.org/upload-expires': '2000-01-01T00:00:00Z' } } } },
    (await import('@kubernetes/client-node')).setHeaderOptions('Content-Type', 'application/merge-patch+json'),
  );
  await alice('POST', 'api/v1/uploads', { form: codeForm({ 'new.py': 'print(2)' }) });
  // The sweep runs after the upload is answered, off its path.
  await eventually('the expired upload to be swept', () =>
    admin.core.readNamespacedConfigMap({ name, namespace: aliceNs }).then(
      () => false,
      (error) => error.code === 404,
    ),
  );
});
uploads('path traversal in an archive is refused', async () => {
  const form = new FormData();
  const { execFileSync } = await import('node:child_process');
  const zip = execFileSync('python3', [
    '-c',
    'import io,zipfile,sys\nb=io.BytesIO()\nz=zipfile.ZipFile(b,"w")\nz.writestr("../escape.sh","x")\nz.close()\nsys.stdout.buffer.write(b.getvalue())',
  ]);
  form.append('archive', new Blob([new Uint8Array(zip)]), 'code.zip');
  const res = await alice('POST', 'api/v1/uploads', { form });
  assert.is(res.status, 400);
  assert.match(res.body.detail, /escapes the upload root/);
});
uploads('an upload over the size limit is 413', async () => {
  const res = await alice('POST', 'api/v1/uploads', { form: codeForm({ 'big.bin': Buffer.alloc(9 * 1024 * 1024, 1) }) });
  assert.is(res.status, 413, res.text);
});
uploads('a large upload streams into the per-user PVC (no writer Job, no chunk ConfigMaps); a job copies it from there', async () => {
  const { randomBytes } = await import('node:crypto');
  const { existsSync, readFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const volume = await stack.cluster.execDir(aliceNs); // the user's volume (the test cluster has no provisioner)
  const weights = randomBytes(1536 * 1024);
  const res = await alice('POST', 'api/v1/uploads', { form: codeForm({ 'main.py': 'print(1)', 'weights.bin': weights }) });
  assert.is(res.status, 201, res.text);
  assert.is(res.body.storage, 'pvc');
  const pvc = await admin.core.readNamespacedPersistentVolumeClaim({ name: 'kbatch-uploads', namespace: aliceNs });
  assert.equal(pvc.spec!.accessModes, ['ReadWriteOnce']);
  const writers = (await admin.batch.listNamespacedJob({ namespace: aliceNs, labelSelector: 'kbatch.jupyter.org/component=upload-writer' }))
    .items;
  assert.is(writers.length, 0);
  const chunks = await admin.core.listNamespacedConfigMap({ namespace: aliceNs, labelSelector: 'kbatch.jupyter.org/upload' });
  assert.not.ok(
    chunks.items.some((c) => /-\d{4}$/.test(c.metadata!.name!)),
    'no chunk ConfigMaps',
  );
  const claims = JSON.parse(Buffer.from(res.body.upload.split('.')[1], 'base64url').toString()) as { code: { path: string } };
  assert.ok(existsSync(join(volume, claims.code.path, 'main.py')));
  assert.ok(readFileSync(join(volume, claims.code.path, 'weights.bin')).equals(weights));
  const job = await alice('POST', 'api/v1/jobs', {
    json: { name: 'bigcode', image: 'python', command: ['python', 'main.py'], upload: res.body.upload },
  });
  assert.is(job.status, 201, job.text);
  const created = await admin.batch.readNamespacedJob({ name: job.body.name, namespace: aliceNs });
  assert.is(created.spec!.template.spec!.volumes!.find((v) => v.name === 'uploads')!.persistentVolumeClaim!.claimName, 'kbatch-uploads');
});
uploads.run();

// ---------------------------------------------------------------------------------------------
const jobs = suite('list, show, logs, delete');
jobs('list is newest first, paginates, and hides upload writers', async () => {
  const first = await submit({ name: 'page' });
  const second = await submit({ name: 'page' });
  const all = (await alice('GET', 'api/v1/jobs?limit=500')).body.items.map((j: { name: string }) => j.name);
  assert.is(all[0], second);
  assert.is(all[1], first, 'same-second submissions still sort by submit time');
  assert.not.ok(all.some((n: string) => n.startsWith('kbatch-upload-')));
  const paged: string[] = [];
  let cursor: string | null = null;
  do {
    const page: { body: { items: { name: string }[]; continue: string | null } } = await alice(
      'GET',
      `api/v1/jobs?limit=2${cursor ? `&continue=${encodeURIComponent(cursor)}` : ''}`,
    );
    paged.push(...page.body.items.map((j) => j.name));
    cursor = page.body.continue;
  } while (cursor);
  assert.equal(paged, all);
  assert.is((await alice('GET', 'api/v1/jobs?limit=0')).status, 400);
  assert.is((await alice('GET', 'api/v1/jobs?continue=garbage')).status, 400);
});
jobs('the list reads jobs raw, and summarises and pages them exactly as from client-node models', async () => {
  // Varied jobs: finished, running, an array, a suspended one (the raw JSON keeps timestamps as strings).
  const finished = await submit({ name: 'raw-done' });
  await waitForState(finished, ['succeeded']);
  await submit({ name: 'raw-array', completions: 2, parallelism: 2 });
  const backend = new KubernetesBackend({
    ...loadSettings({ ...serverSettings, KUBECONFIG: stack.cluster.kbatchKubeconfig, JUPYTERHUB_API_URL: stack.hub.apiUrl }),
  });
  try {
    const now = new Date();
    const summaries = async (raw: boolean) => {
      const items: V1Job[] = [];
      let continueToken: string | undefined;
      do {
        const page = await backend.listJobs(aliceNs, { limit: 2, continueToken, raw });
        items.push(...page.items);
        continueToken = page.continueToken;
      } while (continueToken);
      return newestFirst(items).map((job) => jobSummary(job, now));
    };
    // Jobs change state between two reads: compare two reads with nothing changed in between.
    const raw = await eventually('two reads of an unchanged namespace', async () => {
      const [raw, models] = [await summaries(true), await summaries(false)];
      const again = await summaries(true);
      if (JSON.stringify(raw) !== JSON.stringify(again)) return undefined;
      assert.equal(raw, models);
      return raw;
    });
    assert.ok(raw.length >= 4, 'paged through several pages');
    assert.ok(raw.some((j) => j.state === 'succeeded' && j.finishedAt));
    // The API server's refusal comes back as the same error the models' path throws, mapped once.
    const refused = await backend.listJobs(aliceNs, { raw: true, continueToken: 'garbage' }).then(
      () => undefined,
      (error: unknown) => toHttpError(error),
    );
    assert.is(refused?.status, 400, String(refused?.message));
  } finally {
    await backend.close();
  }
});
jobs('show has pods and conditions once the pod has run', async () => {
  const name = await submit({ name: 'show' });
  // Kubernetes >= 1.31 sets SuccessCriteriaMet (already "succeeded" for us) a moment before Complete.
  const detail = await eventually(`job ${name} to be Complete`, async () => {
    const res = await alice('GET', `api/v1/jobs/${name}`);
    return res.body.conditions?.some((c: { type: string }) => c.type === 'Complete') ? res.body : undefined;
  });
  assert.is(detail.state, 'succeeded');
  assert.is(detail.pods.length, 1);
  assert.is(detail.pods[0].phase, 'Succeeded');
  assert.ok(detail.conditions.some((c: { type: string }) => c.type === 'Complete'));
  assert.ok(detail.durationSeconds >= 0);
});
jobs('logs are read and a followed stream ends when the pod finishes', async () => {
  await stack.cluster.setLogs(aliceNs, ['step 1', 'step 2']);
  const name = await submit({ name: 'logs' });
  await waitForState(name, ['running']);
  const started = Date.now();
  const res = await fetch(new URL(`api/v1/jobs/${name}/logs?follow=true`, stack.serviceUrl), {
    headers: { authorization: `token ${stack.hub.tokens.alice}` },
  });
  assert.is(res.status, 200);
  const text = await res.text();
  assert.match(text, /step 1\nstep 2\n/);
  const detail = await alice('GET', `api/v1/jobs/${name}`);
  assert.is(detail.body.state, 'succeeded', 'the stream ended because the pod finished');
  assert.ok(Date.now() - started < 20_000);
  const plain = await alice('GET', `api/v1/jobs/${name}/logs`);
  assert.is(plain.text, 'step 1\nstep 2\n');
});
jobs('since resumes after the last line seen', async () => {
  const name = await submit({ name: 'since' });
  await waitForState(name, ['running', 'succeeded']);
  const future = new Date(Date.now() + 3600_000).toISOString();
  const res = await alice('GET', `api/v1/jobs/${name}/logs?since=${future}`);
  assert.is(res.status, 200);
  assert.is(res.text, '');
  assert.is((await alice('GET', `api/v1/jobs/${name}/logs?since=yesterday`)).status, 400);
});
jobs("bob cannot see, log or delete alice's job: 404", async () => {
  const name = await submit({ name: 'private' });
  assert.is((await bob('GET', `api/v1/jobs/${name}`)).status, 404);
  assert.is((await bob('GET', `api/v1/jobs/${name}/logs`)).status, 404);
  assert.is((await bob('DELETE', `api/v1/jobs/${name}`)).status, 404);
  assert.not.ok((await bob('GET', 'api/v1/jobs')).body.items.some((j: { name: string }) => j.name === name));
  assert.is((await alice('GET', `api/v1/jobs/${name}`)).status, 200);
});
jobs('delete is foreground and cascades to pods and the Secret', async () => {
  const name = await submit({ name: 'gone' });
  await waitForState(name, ['running', 'succeeded']);
  const res = await alice('DELETE', `api/v1/jobs/${name}`);
  assert.is(res.status, 200, res.text);
  assert.is(res.body.deleted, name);
  await eventually('job, pods and secret to disappear', async () => {
    const job = await alice('GET', `api/v1/jobs/${name}`);
    const pods = await admin.core.listNamespacedPod({ namespace: aliceNs, labelSelector: `batch.kubernetes.io/job-name=${name}` });
    const secret = await admin.core.readNamespacedSecret({ name, namespace: aliceNs }).then(
      () => true,
      () => false,
    );
    return job.status === 404 && pods.items.length === 0 && !secret;
  });
  assert.is((await alice('DELETE', `api/v1/jobs/${name}`)).status, 404);
});
jobs('indexed arrays run one pod per index', async () => {
  const name = await submit({ name: 'array', completions: 3, parallelism: 3 });
  const detail = await waitForState(name, ['succeeded']);
  assert.equal(detail.pods.map((p: { completionIndex: string }) => p.completionIndex).sort(), ['0', '1', '2']);
});
jobs.run();

// ---------------------------------------------------------------------------------------------
const docs = suite('OpenAPI');
docs('is served and every documented path is routed', async () => {
  const res = await anonymous('GET', 'openapi.json');
  assert.is(res.status, 200);
  assert.is(res.body.openapi, '3.1.0');
  for (const [path, methods] of Object.entries(res.body.paths as Record<string, Record<string, unknown>>)) {
    for (const method of Object.keys(methods)) {
      const concrete = path.replace('{name}', 'does-not-exist').replace(/^\//, '');
      const reply = await alice(method.toUpperCase(), concrete, method === 'post' ? { json: {} } : {});
      assert.is.not(reply.body?.reason, 'NoRoute', `${method} ${path}`);
      assert.ok(reply.status !== 405, `${method} ${path}`);
    }
  }
});
docs('every API route the server has is documented', async () => {
  const res = await anonymous('GET', 'openapi.json');
  const paths = res.body.paths as Record<string, Record<string, unknown>>;
  // The route table the server was built from; its factories read nothing at construction.
  for (const route of apiRoutes({ settings: { prefix: '/' } } as Deps)) {
    const path = documentedPath(route.path);
    assert.ok(paths[path]?.[route.method.toLowerCase()], `${route.method} ${path}`);
  }
});
docs.run();

// ---------------------------------------------------------------------------------------------
const teardown = suite('stack');
teardown('stops cleanly', async () => {
  await stack.stop();
});
teardown.run();

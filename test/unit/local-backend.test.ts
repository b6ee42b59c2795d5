import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import { LocalBackend } from '../../lib/backend/local/index.ts';
import { LocalStore } from '../../lib/backend/local/store.ts';
import { buildJobObjects, buildNamespace } from '../../lib/k8s/builders.ts';
import { namespaceForUser } from '../../lib/k8s/names.ts';
import { parseJobSpec } from '../../lib/jobs/spec.ts';
import { normalizeUpload } from '../../lib/uploads/archive.ts';
import { jobState } from '../../lib/jobs/views.ts';

/** Every data directory a test makes, removed at the end. */
const roots: string[] = [];
function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'kbatch-local-'));
  roots.push(dir);
  return dir;
}
const backends: LocalBackend[] = [];
function newBackend(root = dataDir()): LocalBackend {
  const backend = new LocalBackend(root);
  backends.push(backend);
  return backend;
}

/** A user as the authenticator resolves it: the name and the namespace it maps to. */
const owner = (name: string) => ({ name, namespace: namespaceForUser(name) });

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
  const backend = newBackend();
  const upload = normalizeUpload(
    [{ path: 'main.py', type: 'file', mode: 0o644, data: Buffer.from('import os\nprint("sum", 1+1, os.environ["GREETING"])\n') }],
    limits,
  );
  const code = await backend.storeCode(owner('alice'), upload, new Date(Date.now() + 60_000));
  const objects = buildJobObjects(
    parseJobSpec({ name: 'py', image: 'python', command: ['python3', 'main.py'], env: { GREETING: 'hello' } }),
    { name: 'alice', namespace: 'kbatch-alice' },
    'py-aaaaa',
    { settings, profiles: {}, code },
  );
  await backend.ensureNamespace({ metadata: { name: objects.namespace } });
  await backend.createJob(objects, code);
  const job = await waitForEnd(backend, objects.namespace, 'py-aaaaa');
  assert.is(jobState(job), 'succeeded');
  const [pod] = await backend.listPods(objects.namespace, { jobName: 'py-aaaaa' });
  assert.ok(pod);
  assert.is(
    await text(await backend.podLogs(objects.namespace, pod!.metadata!.name!, { follow: false }, new AbortController().signal)),
    'sum 2 hello\n',
  );
});
local('indexed arrays get JOB_COMPLETION_INDEX; failures respect backoffLimit', async () => {
  const backend = newBackend();
  const objects = buildJobObjects(
    parseJobSpec({
      name: 'arr',
      image: 'x',
      command: ['sh', '-c', 'echo index=$JOB_COMPLETION_INDEX; exit $((JOB_COMPLETION_INDEX == 2))'],
      completions: 3,
      parallelism: 3,
      backoffLimit: 1,
    }),
    { name: 'bob', namespace: 'kbatch-bob' },
    'arr-aaaaa',
    { settings, profiles: {} },
  );
  await backend.ensureNamespace({ metadata: { name: objects.namespace } });
  await backend.createJob(objects, undefined);
  const job = await waitForEnd(backend, objects.namespace, 'arr-aaaaa');
  assert.is(jobState(job), 'failed');
  assert.is(job.status!.succeeded, 2);
  assert.is(job.status!.failed, 2, 'index 2 ran twice: once plus one retry');
});
local('follow streams lines as they come and ends with the process', async () => {
  const backend = newBackend();
  const objects = buildJobObjects(
    parseJobSpec({ name: 'slow', image: 'x', command: ['sh', '-c', 'for i in 1 2 3; do echo line $i; sleep 0.3; done'] }),
    { name: 'bob', namespace: 'kbatch-bob' },
    'slow-aaaaa',
    { settings, profiles: {} },
  );
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
  const backend = newBackend();
  const objects = buildJobObjects(
    parseJobSpec({ name: 'sleep', image: 'x', command: ['sleep', '30'] }),
    { name: 'bob', namespace: 'kbatch-bob' },
    'sleep-aaaaa',
    { settings, profiles: {} },
  );
  await backend.ensureNamespace({ metadata: { name: objects.namespace } });
  await backend.createJob(objects, undefined);
  await new Promise((r) => setTimeout(r, 200));
  await backend.deleteJob(objects.namespace, 'sleep-aaaaa');
  await backend.getJob(objects.namespace, 'sleep-aaaaa').then(
    () => assert.unreachable(),
    (e) => assert.is(e.status, 404),
  );
});
local('two creates of one name: one job, one Conflict', async () => {
  const backend = newBackend();
  const objects = buildJobObjects(parseJobSpec({ name: 'twin', image: 'x', command: ['true'] }), owner('bob'), 'twin-aaaaa', {
    settings,
    profiles: {},
  });
  await backend.ensureNamespace({ metadata: { name: objects.namespace } });
  const results = await Promise.allSettled([backend.createJob(objects, undefined), backend.createJob(objects, undefined)]);
  assert.equal(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
  assert.is((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason.status, 409);
});
local.run();

/** A job submitted by `user`, in the namespace the builders give that user. */
async function submit(backend: LocalBackend, user: string, command: string[], name = 'job-aaaaa', extra: Record<string, unknown> = {}) {
  const objects = buildJobObjects(parseJobSpec({ name: 'job', image: 'x', command, ...extra }), owner(user), name, {
    settings,
    profiles: {},
  });
  await backend.ensureNamespace(buildNamespace(owner(user)));
  await backend.createJob(objects, undefined);
  return objects.namespace;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function onlyPod(backend: LocalBackend, namespace: string, job: string): Promise<V1Pod> {
  for (let i = 0; i < 50; i++) {
    const [pod] = await backend.listPods(namespace, { jobName: job });
    if (pod?.status?.phase === 'Running' || pod?.status?.phase === 'Succeeded' || pod?.status?.phase === 'Failed') return pod;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('no started pod');
}

const restart = suite('a restarted backend fails the jobs the previous run left running');
restart('list answers at once and the interrupted job and its pod are failed with ServerRestarted', async () => {
  const root = dataDir();
  // The state a server leaves when it is killed mid-job: a job with no condition and a running pod.
  const store = new LocalStore(root);
  const namespace = namespaceForUser('alice');
  await store.ensureNamespace(buildNamespace(owner('alice')));
  await store.createJobDir(namespace, 'crashed-aaaaa', undefined);
  const job: V1Job = {
    metadata: { name: 'crashed-aaaaa', namespace, creationTimestamp: new Date() },
    spec: { template: {} },
    status: { active: 1, ready: 1 },
  };
  await store.saveJob(namespace, job);
  const pod: V1Pod = {
    metadata: {
      name: 'crashed-aaaaa-bcdfg',
      namespace,
      labels: { 'batch.kubernetes.io/job-name': 'crashed-aaaaa' },
      creationTimestamp: new Date(),
    },
    status: {
      phase: 'Running',
      startTime: new Date(),
      containerStatuses: [{ name: 'job', ready: true, restartCount: 0, image: 'x', imageID: '', state: { running: {} } }],
    },
  };
  await store.savePod(namespace, pod);

  const backend = newBackend(root);
  const listed = await Promise.race([backend.listJobs(namespace, {}), new Promise<'hung'>((r) => setTimeout(() => r('hung'), 3000))]);
  assert.ok(listed !== 'hung', 'listJobs answered');
  const [recovered] = listed.items;
  assert.is(jobState(recovered!), 'failed');
  assert.is(recovered!.status!.conditions![0]!.reason, 'ServerRestarted');
  assert.is(recovered!.status!.active, 0);
  const after = await backend.getPod(namespace, 'crashed-aaaaa-bcdfg');
  assert.is(after.status!.phase, 'Failed');
  assert.is(after.status!.reason, 'ServerRestarted');
  assert.ok(after.status!.containerStatuses![0]!.state!.terminated, 'the container shows as terminated, not running');
});
restart('the processes a killed server left running are killed', async () => {
  const root = dataDir();
  // The first backend stands for a server killed outright: its detached process keeps running.
  const crashed = newBackend(root);
  const namespace = await submit(crashed, 'alice', ['sleep', '30'], 'orphan-aaaaa');
  const pod = (await onlyPod(crashed, namespace, 'orphan-aaaaa')).metadata!.name!;
  const recordFile = join(root, 'namespaces', namespace, 'jobs', 'orphan-aaaaa', 'pods', `${pod}.process`);
  for (let i = 0; i < 50 && !existsSync(recordFile); i++) await new Promise((r) => setTimeout(r, 20));
  const { pid } = JSON.parse(readFileSync(recordFile, 'utf8')) as { pid: number };
  assert.ok(isAlive(pid));
  await newBackend(root).listJobs(namespace, {});
  for (let i = 0; i < 50 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 20));
  assert.not.ok(isAlive(pid), 'the leftover process is gone');
});
restart('a process record whose process is gone, or that names another process, kills nothing', async () => {
  const root = dataDir();
  const store = new LocalStore(root);
  const namespace = namespaceForUser('alice');
  await store.ensureNamespace(buildNamespace(owner('alice')));
  await store.createJobDir(namespace, 'stale-aaaaa', undefined);
  await store.saveJob(namespace, { metadata: { name: 'stale-aaaaa', namespace }, spec: { template: {} }, status: {} });
  await store.savePod(namespace, {
    metadata: { name: 'stale-aaaaa-bcdfg', namespace, labels: { 'batch.kubernetes.io/job-name': 'stale-aaaaa' } },
    status: { phase: 'Running' },
  });
  // This very test process, but recorded with another start time: a pid reused since.
  writeFileSync(
    store.podFile(namespace, 'stale-aaaaa-bcdfg', 'process'),
    JSON.stringify({ pid: process.pid, bootId: 'x', startTime: '1' }),
  );
  await newBackend(root).listJobs(namespace, {});
  assert.ok(isAlive(process.pid));
});
restart('finished jobs are left as they were', async () => {
  const root = dataDir();
  const first = newBackend(root);
  const namespace = await submit(first, 'alice', ['true'], 'done-aaaaa');
  const before = await waitForEnd(first, namespace, 'done-aaaaa');
  const again = await newBackend(root).getJob(namespace, 'done-aaaaa');
  assert.is(jobState(again), 'succeeded');
  assert.equal(
    again.status!.conditions,
    JSON.parse(JSON.stringify(before.status!.conditions)).map((c: Record<string, unknown>) => ({
      ...c,
      lastTransitionTime: new Date(c.lastTransitionTime as string),
      lastProbeTime: new Date(c.lastProbeTime as string),
    })),
  );
});
restart('a job submitted while recovery runs is not mistaken for an interrupted one', async () => {
  const root = dataDir();
  await newBackend(root).ensureNamespace(buildNamespace(owner('alice')));
  const backend = newBackend(root);
  const namespace = await submit(backend, 'alice', ['sh', '-c', 'sleep 0.3'], 'fresh-aaaaa');
  assert.is(jobState(await waitForEnd(backend, namespace, 'fresh-aaaaa')), 'succeeded');
});
restart.run();

const tail = suite('tailLines on the local backend');
tail('the last N lines of a finished pod', async () => {
  const backend = newBackend();
  const namespace = await submit(backend, 'bob', ['sh', '-c', 'for i in 1 2 3 4 5 6; do echo line $i; done']);
  await waitForEnd(backend, namespace, 'job-aaaaa');
  const pod = await onlyPod(backend, namespace, 'job-aaaaa');
  assert.is(
    await text(await backend.podLogs(namespace, pod.metadata!.name!, { follow: false, tailLines: 2 }, new AbortController().signal)),
    'line 5\nline 6\n',
  );
});
tail('with follow: the last N lines so far, then the rest as it comes', async () => {
  const backend = newBackend();
  const namespace = await submit(backend, 'bob', ['sh', '-c', 'echo a; echo b; echo c; sleep 0.6; echo d; echo e']);
  const pod = await onlyPod(backend, namespace, 'job-aaaaa');
  await new Promise((r) => setTimeout(r, 300));
  assert.is(
    await text(await backend.podLogs(namespace, pod.metadata!.name!, { follow: true, tailLines: 1 }, new AbortController().signal)),
    'c\nd\ne\n',
  );
});
tail.run();

const follow = suite('following a local pod');
follow('a fast burst right before exit is delivered whole', async () => {
  const backend = newBackend();
  const namespace = await submit(backend, 'bob', ['sh', '-c', 'sleep 0.3; i=0; while [ $i -lt 3000 ]; do echo n$i; i=$((i+1)); done']);
  const pod = await onlyPod(backend, namespace, 'job-aaaaa');
  const out = await text(await backend.podLogs(namespace, pod.metadata!.name!, { follow: true }, new AbortController().signal));
  const lines = out.trimEnd().split('\n');
  assert.is(lines.length, 3000);
  assert.is(lines[2999], 'n2999');
});
follow('a follower of a pod whose job is deleted ends', async () => {
  const backend = newBackend();
  const namespace = await submit(backend, 'bob', ['sleep', '30']);
  const pod = await onlyPod(backend, namespace, 'job-aaaaa');
  const stream = await backend.podLogs(namespace, pod.metadata!.name!, { follow: true }, new AbortController().signal);
  const ended = text(stream);
  await backend.deleteJob(namespace, 'job-aaaaa');
  assert.is(await Promise.race([ended, new Promise((r) => setTimeout(() => r('still open'), 3000))]), '');
});
follow.run();

const traversal = suite('names never escape the data directory');
traversal('job, pod and namespace names with traversal, separators, dots or bad characters are NotFound', async () => {
  const root = dataDir();
  const backend = newBackend(root);
  const alice = await submit(backend, 'alice', ['sh', '-c', 'echo secret of alice'], 'secret-aaaaa');
  await waitForEnd(backend, alice, 'secret-aaaaa');
  const alicePod = (await onlyPod(backend, alice, 'secret-aaaaa')).metadata!.name!;
  const bob = namespaceForUser('bob');
  await backend.ensureNamespace(buildNamespace(owner('bob')));
  // A file outside the data directory, next to it, that a traversal would reach.
  const outside = join(root, '..', `outside-${Date.now()}`);
  mkdirSync(join(outside, 'pods'), { recursive: true });
  writeFileSync(join(outside, 'job.json'), JSON.stringify({ metadata: { name: 'stolen' } }));
  roots.push(outside);
  const jobNames = [
    '..',
    '.',
    '',
    '../kbatch-alice',
    `../../${alice}/jobs/secret-aaaaa`,
    `..%2F..%2F${alice}%2Fjobs%2Fsecret-aaaaa`,
    '../../../outside',
    'a/b',
    'a\\b',
    '.hidden',
    'a..b',
    'Secret-aaaaa',
    'secret-aaaaa\0',
    ' secret-aaaaa',
    'x'.repeat(254),
    '/etc',
    'secret-aaaaa/',
  ];
  for (const name of jobNames) {
    await backend.getJob(bob, name).then(
      () => assert.unreachable(`getJob ${JSON.stringify(name)}`),
      (e) => assert.is(e.status, 404, name),
    );
    await backend.deleteJob(bob, name).then(
      () => assert.unreachable(`deleteJob ${JSON.stringify(name)}`),
      (e) => assert.is(e.status, 404, name),
    );
    assert.equal(await backend.listPods(bob, { jobName: name }), [], `listPods ${JSON.stringify(name)}`);
  }
  const podNames = [
    `../../${alice}/jobs/secret-aaaaa/pods/${alicePod}`,
    `..%2F${alicePod}`,
    `../${alicePod}`,
    `${alicePod}/..`,
    '..-aaaaa',
    '.-aaaaa',
    '../../../outside-aaaaa',
    'a/b-aaaaa',
    alicePod.toUpperCase(),
  ];
  for (const name of podNames) {
    await backend.getPod(bob, name).then(
      () => assert.unreachable(`getPod ${JSON.stringify(name)}`),
      (e) => assert.is(e.status, 404, name),
    );
    await backend.podLogs(bob, name, { follow: false }, new AbortController().signal).then(
      () => assert.unreachable(`podLogs ${JSON.stringify(name)}`),
      (e) => assert.is(e.status, 404, name),
    );
  }
  for (const namespace of ['..', '.', '', '../namespaces/kbatch-alice', `..%2F${alice}`, 'a/b', 'Kbatch-alice', `${alice}/../${alice}`]) {
    await backend.listJobs(namespace, {}).then(
      () => assert.unreachable(`listJobs ${JSON.stringify(namespace)}`),
      (e) => assert.is(e.status, 404, namespace),
    );
    await backend.getJob(namespace, 'secret-aaaaa').then(
      () => assert.unreachable(`getJob in ${JSON.stringify(namespace)}`),
      (e) => assert.is(e.status, 404, namespace),
    );
    await backend.getPod(namespace, alicePod).then(
      () => assert.unreachable(`getPod in ${JSON.stringify(namespace)}`),
      (e) => assert.is(e.status, 404, namespace),
    );
    await backend.ensureNamespace({ metadata: { name: namespace } }).then(
      () => assert.unreachable(`ensureNamespace ${JSON.stringify(namespace)}`),
      (e) => assert.is(e.status, 400, namespace),
    );
  }
  // Nothing was read, created or removed outside: alice's job and the neighbour are intact, bob has no jobs.
  assert.is(jobState(await backend.getJob(alice, 'secret-aaaaa')), 'succeeded');
  assert.ok(existsSync(join(outside, 'job.json')));
  assert.equal((await backend.listJobs(bob, {})).items, []);
});
traversal('a forged local upload path outside the uploads directory is refused', async () => {
  const backend = newBackend();
  const objects = buildJobObjects(parseJobSpec({ name: 'up', image: 'x', command: ['true'] }), owner('bob'), 'up-aaaaa', {
    settings,
    profiles: {},
  });
  await backend.ensureNamespace(buildNamespace(owner('bob')));
  await backend.createJob(objects, { kind: 'local', path: '/etc/hostname' }).then(
    () => assert.unreachable(),
    (e) => assert.is(e.status, 400),
  );
});
traversal.run();

const ownership = suite('a namespace records the user who created it');
ownership('the first user is recorded; ensureNamespace and namespaceOwner answer that owner to anyone', async () => {
  const root = dataDir();
  const backend = newBackend(root);
  const alice = buildNamespace(owner('alice'));
  const name = alice.metadata!.name!;
  assert.is(await backend.namespaceOwner(name), undefined, 'no namespace yet');
  assert.is(await backend.ensureNamespace(alice), 'alice');
  assert.is(await backend.ensureNamespace(alice), 'alice');
  const recorded = JSON.parse(readFileSync(join(root, 'namespaces', name, 'namespace.json'), 'utf8'));
  assert.is(recorded.metadata.annotations['kbatch.jupyter.org/username'], 'alice');
  const impostor = { ...alice, metadata: { ...alice.metadata, annotations: { 'kbatch.jupyter.org/username': 'Alice' } } };
  assert.is(await backend.ensureNamespace(impostor), 'alice', 'the record is never changed; the caller refuses');
  assert.is(await backend.namespaceOwner(name), 'alice');
  assert.is(await newBackend(root).namespaceOwner(name), 'alice', 'kept across restarts');
});
ownership('of users racing to create one namespace, exactly one is recorded and all are told the same owner', async () => {
  const backend = newBackend();
  const base = buildNamespace(owner('carol'));
  const as = (user: string) => ({ ...base, metadata: { ...base.metadata, annotations: { 'kbatch.jupyter.org/username': user } } });
  const answers = await Promise.all(['carol', 'mallory', 'eve', 'trent'].map((user) => backend.ensureNamespace(as(user))));
  assert.is(new Set(answers).size, 1, answers.join(' '));
  assert.is(await backend.namespaceOwner(base.metadata!.name!), answers[0]);
});
ownership('a namespace from before owners were recorded is owned by the user of its jobs', async () => {
  const root = dataDir();
  const backend = newBackend(root);
  const namespace = await submit(backend, 'alice', ['true'], 'old-aaaaa');
  await waitForEnd(backend, namespace, 'old-aaaaa');
  rmSync(join(root, 'namespaces', namespace, 'namespace.json'));
  const impostor = {
    ...buildNamespace(owner('alice')),
    metadata: { ...buildNamespace(owner('alice')).metadata, annotations: { 'kbatch.jupyter.org/username': 'mallory' } },
  };
  assert.is(await backend.ensureNamespace(impostor), 'alice');
  assert.is(await backend.namespaceOwner(namespace), 'alice');
});
ownership('a namespace without a record and without jobs answers null (usable, as on Kubernetes)', async () => {
  const root = dataDir();
  mkdirSync(join(root, 'namespaces', 'made-by-hand', 'jobs'), { recursive: true });
  assert.is(await newBackend(root).namespaceOwner('made-by-hand'), null);
});
ownership.run();

const cleanup = suite('cleanup');
cleanup('stops the processes and removes the data', async () => {
  for (const backend of backends) await backend.close();
  await new Promise((r) => setTimeout(r, 200));
  for (const dir of roots) rmSync(dir, { recursive: true, force: true });
});
cleanup.run();

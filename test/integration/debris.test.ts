/**
 * No submit leaves debris, through the real stack: a refused submit stores nothing, a failed one
 * removes what it created, an interrupted one leaves only objects the garbage collector removes (or
 * the user's own Job), and a retry with the same Idempotency-Key returns the first job, completing
 * it, instead of making a second one. Interruptions are injected into an in-process backend that
 * talks to the same control plane, between every API call a submit makes.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { submitCronJob, submitJob, storeUpload } from '../../lib/api/operations.ts';
import { createDeps } from '../../lib/app.ts';
import { resolveUser } from '../../lib/auth/user.ts';
import type { User } from '../../lib/auth/types.ts';
import { KubernetesBackend } from '../../lib/backend/kubernetes.ts';
import { loadSettings } from '../../lib/config.ts';
import { idempotencyKeyHeader } from '../../lib/contract.ts';
import { parseJobSpec } from '../../lib/jobs/spec.ts';
import { normalizeUpload, type ArchiveEntry } from '../../lib/uploads/archive.ts';
import { startServer } from '../stack/server.ts';
import { serverSettings, startStack } from '../stack/stack.ts';
import { adminClients, client, codeForm, eventually } from './helpers.ts';

const stack = await startStack();
const alice = client(stack.serviceUrl, stack.hub.tokens.alice);
const bob = client(stack.serviceUrl, stack.hub.tokens.bob);
const admin = adminClients(stack.cluster.adminKubeconfig);
const aliceNs = 'kbatch-alice';
/** Over KBATCH_CONFIGMAP_MAX_BYTES (256 KiB in the stack), random so it does not compress: streamed into the user's volume. */
const largeCode = () => ({ 'main.py': 'print(1)', 'weights.bin': randomBytes(900 * 1024) });

/** Every kbatch object of a namespace a submit could leave behind. */
async function objectsIn(namespace: string) {
  const names = (list: { items: { metadata?: { name?: string } }[] }) => list.items.map((item) => item.metadata!.name!).sort();
  return {
    jobs: names(await admin.batch.listNamespacedJob({ namespace })),
    cronJobs: names(await admin.batch.listNamespacedCronJob({ namespace })),
    configMaps: names(await admin.core.listNamespacedConfigMap({ namespace, labelSelector: 'kbatch.jupyter.org/upload' })),
    secrets: names(await admin.core.listNamespacedSecret({ namespace })),
    claims: names(await admin.core.listNamespacedPersistentVolumeClaim({ namespace })),
  };
}

/** Uploads stored in the user's volume (KWOK's exec directory of the namespace stands in for it). */
async function uploadsOnVolume(namespace: string): Promise<string[]> {
  const dir = join(await stack.cluster.execDir(namespace), 'uploads');
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

// ---------------------------------------------------------------------------------------------
const refused = suite('a refused submit stores nothing');
refused('large code with an unknown profile, no image, or limits below requests: nothing stored, no PVC', async () => {
  const before = await objectsIn(aliceNs);
  assert.equal(before.claims, [], 'a fresh user has no upload claim yet');
  for (const [spec, status] of [
    [{ name: 'big', image: 'busybox', profile: 'nope' }, 400],
    [{ name: 'big', command: ['true'] }, 400],
    [{ name: 'big', image: 'busybox', resources: { requests: { memory: '2Gi' }, limits: { memory: '1Gi' } } }, 400],
  ] as const) {
    const res = await alice('POST', 'api/v1/jobs', { form: codeForm(largeCode(), spec) });
    assert.is(res.status, status, res.text);
  }
  // Nothing is created asynchronously either: give a straggler time to show up.
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(await objectsIn(aliceNs), before);
});
refused('small inline code refused by us: no ConfigMap', async () => {
  const before = await objectsIn(aliceNs);
  const spec = { name: 'small', image: 'busybox', command: ['true'] };
  assert.is((await alice('POST', 'api/v1/jobs', { form: codeForm({ 'main.py': 'print(1)' }, { ...spec, profile: 'nope' }) })).status, 400);
  assert.is(
    (
      await alice('POST', 'api/v1/jobs', {
        form: codeForm({ 'main.py': 'print(1)' }, { ...spec, resources: { requests: { cpu: '2' }, limits: { cpu: '1' } } }),
      })
    ).status,
    400,
  );
  assert.equal(await objectsIn(aliceNs), before);
});
refused('small or large code refused by the API server (a quota admitting no Job): nothing stored', async () => {
  // The namespace exists once alice has submitted something.
  assert.is((await alice('POST', 'api/v1/jobs', { json: { name: 'first', image: 'busybox', command: ['true'] } })).status, 201);
  const quota = { metadata: { name: 'no-more-jobs' }, spec: { hard: { 'count/jobs.batch': '1' } } };
  await admin.core.createNamespacedResourceQuota({ namespace: aliceNs, body: quota });
  try {
    await eventually(
      'the quota to be counted',
      async () => (await admin.core.readNamespacedResourceQuota({ namespace: aliceNs, name: 'no-more-jobs' })).status?.used !== undefined,
    );
    await stack.cluster.execDir(aliceNs); // the volume large code goes to
    const before = await objectsIn(aliceNs);
    const spec = { name: 'over', image: 'busybox', command: ['true'] };
    for (const files of [{ 'main.py': 'print(1)' }, largeCode()]) {
      const res = await alice('POST', 'api/v1/jobs', { form: codeForm(files, spec) });
      assert.ok(res.status >= 400, res.text);
      assert.match(res.body.detail, /exceeded quota/, res.text);
    }
    await new Promise((r) => setTimeout(r, 1000));
    // Large code went into the user's volume before the Job was refused, and was removed again; the
    // volume itself is per user (made on first use, like the namespace) and stays.
    const after = await objectsIn(aliceNs);
    assert.equal({ ...after, claims: [] }, { ...before, claims: [] });
    assert.equal(await uploadsOnVolume(aliceNs), []);
  } finally {
    await admin.core.deleteNamespacedResourceQuota({ namespace: aliceNs, name: 'no-more-jobs' });
  }
});
refused.run();

// ---------------------------------------------------------------------------------------------
const idempotent = suite('Idempotency-Key');
idempotent('a retried submit with the same key returns the same job and creates nothing new', async () => {
  const headers = { [idempotencyKeyHeader]: `retry-${randomBytes(6).toString('hex')}` };
  const spec = { name: 'once', image: 'python:3.12', command: ['python', 'main.py'] };
  const first = await alice('POST', 'api/v1/jobs', { form: codeForm({ 'main.py': 'print(1)' }, spec), headers });
  assert.is(first.status, 201, first.text);
  const after = await objectsIn(aliceNs);
  const again = await alice('POST', 'api/v1/jobs', { form: codeForm({ 'main.py': 'print(1)' }, spec), headers });
  assert.is(again.status, 201, again.text);
  assert.is(again.body.name, first.body.name);
  assert.equal(await objectsIn(aliceNs), after);
  const job = await admin.batch.readNamespacedJob({ name: first.body.name, namespace: aliceNs });
  assert.is(job.spec!.suspend, false, 'released');
  assert.not.ok(JSON.stringify(job.metadata).includes(headers[idempotencyKeyHeader]), 'the key is stored only as a hash');
});
idempotent('the same key for a different request is a 409; for another user it is another job', async () => {
  const headers = { [idempotencyKeyHeader]: `shared-${randomBytes(6).toString('hex')}` };
  const first = await alice('POST', 'api/v1/jobs', { json: { name: 'keyed', image: 'busybox', command: ['true'] }, headers });
  assert.is(first.status, 201, first.text);
  const changed = await alice('POST', 'api/v1/jobs', { json: { name: 'keyed', image: 'busybox', command: ['false'] }, headers });
  assert.is(changed.status, 409, changed.text);
  assert.match(changed.body.detail, /Idempotency-Key/);
  const other = await bob('POST', 'api/v1/jobs', { json: { name: 'keyed', image: 'busybox', command: ['true'] }, headers });
  assert.is(other.status, 201, other.text);
  assert.is(
    (await admin.batch.readNamespacedJob({ name: other.body.name, namespace: 'kbatch-bob' })).metadata!.annotations![
      'kbatch.jupyter.org/username'
    ],
    'bob',
  );
});
idempotent('a key that is too long or not visible ASCII is a 400 and creates nothing', async () => {
  const before = await objectsIn(aliceNs);
  for (const key of ['x'.repeat(256), 'has space', 'tab\there']) {
    const res = await alice('POST', 'api/v1/jobs', {
      json: { name: 'badkey', image: 'busybox' },
      headers: { [idempotencyKeyHeader]: key },
    });
    assert.is(res.status, 400, `${JSON.stringify(key)}: ${res.text}`);
    assert.is(res.body.field, 'Idempotency-Key');
  }
  assert.equal(await objectsIn(aliceNs), before);
});
idempotent.run();

// ---------------------------------------------------------------------------------------------
// In-process: the same operations and backend as the server, on the same cluster, with failures injected.

const settings = loadSettings({
  ...serverSettings,
  KUBECONFIG: stack.cluster.kbatchKubeconfig,
  JUPYTERHUB_API_URL: stack.hub.apiUrl,
  KBATCH_UPLOAD_SECRET: 'debris-test-upload-secret-0123456789abcdef',
});
const backend = new KubernetesBackend({ ...settings });
const probe = instrument(backend);
const deps = await createDeps(settings, { backend });
const userNamed = (name: string): User => resolveUser({ name, groups: [], admin: false, scopes: [], token: `${name}-hub-token` });
const injected = () => Object.assign(new Error('connect ECONNREFUSED (injected)'), { code: 'ECONNREFUSED' });

type Fault = { kind: 'down'; at: number } | { kind: 'lost'; at: number } | { kind: 'refuse'; method: string } | undefined;

/**
 * Counts the API calls of the backend and injects faults: `down` fails every call from the
 * `at`-th on before it reaches the server (the API server or our process died); `lost` lets the
 * `at`-th call through and loses its answer, later calls work (a dropped connection); `refuse`
 * fails every call of one method.
 */
function instrument(target: KubernetesBackend) {
  const calls: string[] = [];
  let fault: Fault;
  const fields = target as unknown as Record<'core' | 'batch', object>;
  for (const field of ['core', 'batch'] as const) {
    const api = fields[field];
    fields[field] = new Proxy(api, {
      get(object, property, receiver) {
        const value = Reflect.get(object, property, receiver) as unknown;
        if (typeof value !== 'function') return value;
        return async (...args: unknown[]) => {
          const selector = (args[0] as { labelSelector?: string } | undefined)?.labelSelector;
          const index = calls.push(selector ? `${String(property)}[${selector}]` : String(property)) - 1;
          if (fault?.kind === 'down' && index >= fault.at) throw injected();
          if (fault?.kind === 'refuse' && property === fault.method)
            throw Object.assign(new Error('refused (injected)'), { code: 500, body: '{}' });
          const lost = fault?.kind === 'lost' && index === fault.at;
          const result = await (value as (...a: unknown[]) => Promise<unknown>).apply(object, args).catch((error: unknown) => {
            throw lost ? injected() : error;
          });
          if (lost) throw injected();
          return result;
        };
      },
    });
  }
  return {
    calls,
    reset(next?: Fault) {
      fault = next;
      calls.length = 0;
    },
  };
}

function upload(files: Record<string, string | Buffer>) {
  return normalizeUpload(entriesOf(files), { maxBytes: settings.maxUploadBytes, maxFiles: settings.maxUploadFiles });
}

function entriesOf(files: Record<string, string | Buffer>): ArchiveEntry[] {
  return Object.entries(files).map(([path, content]) => ({ path, type: 'file', data: Buffer.from(content), mode: 0o644 }));
}

/** Every Secret and code ConfigMap has an owner that exists (the one with that name and uid). */
async function everythingOwned(namespace: string): Promise<string | true> {
  const exists = async (ref: k8s.V1OwnerReference) => {
    const read =
      ref.kind === 'CronJob'
        ? admin.batch.readNamespacedCronJob({ name: ref.name, namespace })
        : admin.batch.readNamespacedJob({ name: ref.name, namespace });
    return read.then(
      (owner) => owner.metadata!.uid === ref.uid,
      () => false,
    );
  };
  const secrets = (await admin.core.listNamespacedSecret({ namespace })).items;
  const maps = (await admin.core.listNamespacedConfigMap({ namespace, labelSelector: 'kbatch.jupyter.org/upload' })).items;
  for (const object of [...secrets, ...maps]) {
    const refs = object.metadata!.ownerReferences ?? [];
    if (!refs.length || !(await Promise.all(refs.map(exists))).some(Boolean))
      return `${object.kind ?? 'object'} ${object.metadata!.name} has no live owner`;
  }
  return true;
}

async function assertOwnedBy(read: Promise<{ metadata?: k8s.V1ObjectMeta }>, owner: { metadata?: k8s.V1ObjectMeta }, what: string) {
  const object = await read;
  assert.ok(
    object.metadata!.ownerReferences?.some((ref) => ref.uid === owner.metadata!.uid),
    `${what} is owned by ${owner.metadata!.name}`,
  );
}

interface Scenario {
  name: string;
  user: User;
  submit: (key: string) => Promise<k8s.V1Job | k8s.V1CronJob>;
  /** The submit is complete: released, its Secret and code in place and owned. */
  verify: (created: k8s.V1Job | k8s.V1CronJob) => Promise<void>;
}

const smallCode = upload({ 'main.py': 'print("hi")' });
const bigCode = upload({ 'main.py': 'print(1)', 'weights.bin': randomBytes(900 * 1024) });
const jobSpec = (name: string) => parseJobSpec({ name, image: 'python:3.12', command: ['python', 'main.py'] });

function jobScenario(name: string, user: User, code: typeof smallCode): Scenario {
  const { namespace } = user;
  return {
    name,
    user,
    submit: async (key) => {
      await stack.cluster.execDir(namespace); // the volume large code goes to (the test cluster has no provisioner)
      return submitJob(deps, user, jobSpec(name), { upload: code, idempotencyKey: key });
    },
    async verify(created) {
      const job = await admin.batch.readNamespacedJob({ name: created.metadata!.name!, namespace });
      assert.is(job.spec!.suspend, false, `${job.metadata!.name} released`);
      await assertOwnedBy(admin.core.readNamespacedSecret({ name: job.metadata!.name!, namespace }), job, 'the Secret');
      const volumes = job.spec!.template.spec!.volumes!;
      const archive = volumes.find((v) => v.name === 'code-archive')?.configMap?.name;
      if (archive) return assertOwnedBy(admin.core.readNamespacedConfigMap({ name: archive, namespace }), job, 'the code ConfigMap');
      // Large code: in the user's volume, where the Job's init container copies it from.
      const copy = job.spec!.template.spec!.initContainers!.find((c) => c.name === 'copy-code')!;
      const stored = /"\/uploads\/uploads\/([^"/]+)\/\."/.exec(copy.command!.join(' '))?.[1];
      assert.ok(stored && (await uploadsOnVolume(namespace)).includes(stored), `${job.metadata!.name}'s code ${stored} is on the volume`);
    },
  };
}

const scenarios: Scenario[] = [
  jobScenario('inline', userNamed('dora'), smallCode),
  jobScenario('large', userNamed('dora'), bigCode),
  {
    name: 'cron',
    user: userNamed('dora'),
    submit: (key) => submitCronJob(deps, userNamed('dora'), jobSpec('cron'), '@daily', { upload: smallCode, idempotencyKey: key }),
    async verify(created) {
      const { namespace } = userNamed('dora');
      const cronJob = await admin.batch.readNamespacedCronJob({ name: created.metadata!.name!, namespace });
      await assertOwnedBy(admin.core.readNamespacedSecret({ name: cronJob.metadata!.name!, namespace }), cronJob, 'the Secret');
      const archive = cronJob.spec!.jobTemplate.spec!.template.spec!.volumes!.find((v) => v.name === 'code-archive')!.configMap!.name!;
      await assertOwnedBy(admin.core.readNamespacedConfigMap({ name: archive, namespace }), cronJob, 'the code ConfigMap');
    },
  },
];

const interrupted = suite('interrupted submits');
for (const scenario of scenarios) {
  interrupted(`${scenario.name}: after a fault at any API call, only owned objects remain and a retry completes the job`, async () => {
    // The first submit of a user also creates the namespace: count the calls of the second.
    await scenario.submit(`${scenario.name}-clean-1`);
    probe.reset();
    await scenario.verify(await scenario.submit(`${scenario.name}-clean-2`));
    const steps = probe.calls.length;
    assert.ok(steps >= 3, `${steps} calls`);
    const { namespace } = scenario.user;
    for (const kind of ['down', 'lost'] as const) {
      for (let at = 0; at < steps; at++) {
        const key = `${scenario.name}-${kind}-${at}`;
        probe.reset({ kind, at });
        await scenario.submit(key).then(
          () => assert.unreachable(`${key}: the submit succeeded despite the fault`),
          (error: Error) => assert.match(error.message, /injected/, key),
        );
        probe.reset();
        await eventually(
          `${key}: every Secret and ConfigMap owned by a live owner`,
          async () => (await everythingOwned(namespace)) === true,
          30_000,
        ).catch(async (error) => {
          throw new Error(`${(error as Error).message}: ${await everythingOwned(namespace)}`);
        });
        const retried = await scenario.submit(key);
        await scenario.verify(retried);
        const keyed = [
          ...(await admin.batch.listNamespacedJob({ namespace })).items,
          ...(await admin.batch.listNamespacedCronJob({ namespace })).items,
        ].filter((o) => o.metadata!.name === retried.metadata!.name);
        assert.is(keyed.length, 1, `${key}: one ${scenario.name} object, no duplicate`);
      }
    }
  });
}
interrupted('concurrent retries of one keyed submit all get the same, complete job', async () => {
  probe.reset();
  const user = userNamed('ivy');
  const scenario = jobScenario('burst', user, smallCode);
  await scenario.submit('warm-up');
  const results = await Promise.all(Array.from({ length: 6 }, () => scenario.submit('burst-1')));
  assert.equal(new Set(results.map((job) => job.metadata!.uid)).size, 1);
  await scenario.verify(results[0]!);
  const jobs = (await admin.batch.listNamespacedJob({ namespace: user.namespace })).items;
  assert.is(jobs.filter((job) => job.metadata!.name === results[0]!.metadata!.name).length, 1);
  assert.is(await everythingOwned(user.namespace), true);
});
interrupted.run();

// ---------------------------------------------------------------------------------------------
const failed = suite('a submit that fails after storing');
failed('removes exactly what it created: the Job, its Secret and the code it stored in the volume', async () => {
  const user = userNamed('fay');
  const { namespace } = user;
  await stack.cluster.execDir(namespace);
  probe.reset({ kind: 'refuse', method: 'createNamespacedSecret' });
  await submitJob(deps, user, jobSpec('late'), { upload: bigCode }).then(
    () => assert.unreachable('submitted'),
    (error: Error) => assert.match(error.message, /refused/),
  );
  probe.reset();
  await eventually(
    'nothing of the failed submit left',
    async () => {
      const left = await objectsIn(namespace);
      return left.jobs.length + left.configMaps.length + left.secrets.length + (await uploadsOnVolume(namespace)).length === 0;
    },
    30_000,
  );
});
failed('keeps a PVC that existed before the request', async () => {
  const user = userNamed('gus');
  const { namespace } = user;
  await stack.cluster.execDir(namespace);
  await submitJob(deps, user, jobSpec('first'), { upload: bigCode });
  probe.reset({ kind: 'refuse', method: 'createNamespacedSecret' });
  await submitJob(deps, user, jobSpec('second'), { upload: bigCode }).catch(() => undefined);
  probe.reset();
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal((await objectsIn(namespace)).claims, ['kbatch-uploads']);
});
failed.run();

// ---------------------------------------------------------------------------------------------
const cost = suite('API calls per submit');
cost('a submit makes no read-back, no namespace re-check and no sweep; the sweep of an upload lists only unclaimed uploads', async () => {
  const user = userNamed('hal');
  const measure = async (what: string, run: () => Promise<unknown>) => {
    probe.reset();
    await run();
    console.log(`[calls] ${what}: ${probe.calls.length} (${probe.calls.join(', ')})`);
    return [...probe.calls];
  };
  await measure('first submit of a user, no code', () => submitJob(deps, user, jobSpec('c0')));
  const plain = await measure('submit, no code', () => submitJob(deps, user, jobSpec('c1')));
  const inline = await measure('submit with inline code', () => submitJob(deps, user, jobSpec('c2'), { upload: smallCode }));
  const keyed = await measure('submit with inline code and Idempotency-Key', () =>
    submitJob(deps, user, jobSpec('c3'), { upload: smallCode, idempotencyKey: 'cost-1' }),
  );
  const retry = await measure('retry of a completed keyed submit', () =>
    submitJob(deps, user, jobSpec('c3'), { upload: smallCode, idempotencyKey: 'cost-1' }),
  );
  probe.reset();
  const { reference } = await storeUpload(deps, user, upload({ 'main.py': 'print(1)' }));
  const sweep = await eventually('the upload to start a sweep', async () =>
    probe.calls.find((call) => call.startsWith('listNamespacedConfigMap')),
  );
  assert.is(sweep, 'listNamespacedConfigMap[kbatch.jupyter.org/unclaimed-upload]');
  await new Promise((r) => setTimeout(r, 200));
  const referenced = await measure('submit with an upload reference', () =>
    submitJob(deps, user, parseJobSpec({ name: 'c4', image: 'python', upload: reference })),
  );
  for (const calls of [plain, inline, keyed, referenced]) {
    assert.not.ok(
      calls.some((call) => /^(list|read)NamespacedConfigMap/.test(call)),
      `no listing or read-back: ${calls}`,
    );
    assert.ok(calls.filter((call) => /Namespace$/.test(call)).length <= 1, `the namespace is checked at most once: ${calls}`);
  }
  // Job, Secret, release (+ the ConfigMap) and at most one namespace check.
  assert.ok(plain.length <= 4, `${plain}`);
  assert.ok(inline.length <= 5, `${inline}`);
  assert.ok(keyed.length <= 5, `${keyed}`);
  assert.ok(retry.length <= 3, `${retry}`);
});
cost.run();

// ---------------------------------------------------------------------------------------------
/**
 * A TCP forwarder between a second server and the API server, which the test can cut (every open
 * connection reset, new ones refused) and restore: the API server going away mid-burst, as seen from
 * the service, while the Hub and the control plane keep running.
 */
async function apiServerLink(target: URL) {
  const sockets = new Set<import('node:net').Socket>();
  let down = false;
  const server = net.createServer((socket) => {
    if (down) return socket.destroy();
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const end of [socket, upstream]) {
      sockets.add(end);
      end.on('error', () => undefined);
      end.on('close', () => sockets.delete(end));
    }
    socket.pipe(upstream).pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `https://127.0.0.1:${(server.address() as import('node:net').AddressInfo).port}`,
    cut() {
      down = true;
      for (const socket of sockets) socket.destroy();
    },
    restore() {
      down = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

const outage = suite('the API server goes away during a burst of submits');
outage('only owned objects remain, and retrying every submit with its key gives each its one complete job', async () => {
  const link = await apiServerLink(new URL(stack.cluster.server));
  const kubeconfig = join(stack.cluster.dir, 'kbatch-via-link.kubeconfig');
  const config = JSON.parse(readFileSync(stack.cluster.kbatchKubeconfig, 'utf8')) as { clusters: { cluster: { server: string } }[] };
  config.clusters[0]!.cluster.server = link.url;
  writeFileSync(kubeconfig, JSON.stringify(config), { mode: 0o600 });
  const server = await startServer({ ...serverSettings, KUBECONFIG: kubeconfig, JUPYTERHUB_API_URL: stack.hub.apiUrl });
  try {
    const bobDirect = client(server.url, stack.hub.tokens.bob);
    const namespace = 'kbatch-bob';
    const submitOne = (i: number) =>
      bobDirect('POST', 'api/v1/jobs', {
        form: codeForm({ 'main.py': `print(${i})` }, { name: `burst${i}`, image: 'python', command: ['python', 'main.py'] }),
        headers: { [idempotencyKeyHeader]: `outage-${i}` },
      });
    // Warm: the namespace exists and the server knows it, so the burst is all job creation.
    assert.is((await submitOne(0)).status, 201);
    const jobsBefore = (await admin.batch.listNamespacedJob({ namespace })).items.length;
    const burst = Array.from({ length: 12 }, (_, i) => submitOne(i + 1));
    await eventually(
      'the burst to reach the API server',
      async () => (await admin.batch.listNamespacedJob({ namespace })).items.length > jobsBefore,
      10_000,
      5,
    );
    link.cut();
    const answers = await Promise.all(burst);
    await new Promise((r) => setTimeout(r, 500));
    link.restore();
    const statuses = answers.map((answer) => answer.status);
    console.log(`[outage] first answers: ${statuses.join(' ')}`);
    assert.ok(
      statuses.some((status) => status >= 500),
      `some submits were cut off: ${statuses}`,
    );
    assert.ok(
      statuses.every((status) => status === 201 || status >= 500),
      `${statuses}`,
    );
    await eventually('every Secret and ConfigMap owned by a live owner', async () => (await everythingOwned(namespace)) === true, 30_000);
    const retried = await Promise.all(Array.from({ length: 12 }, (_, i) => submitOne(i + 1)));
    for (const [i, answer] of retried.entries()) {
      assert.is(answer.status, 201, answer.text);
      if (answers[i]!.status === 201)
        assert.is(answer.body.name, answers[i]!.body.name, 'the retry returns the job the first answer named');
      const job = await admin.batch.readNamespacedJob({ name: answer.body.name, namespace });
      assert.is(job.spec!.suspend, false, `${answer.body.name} released`);
      await assertOwnedBy(admin.core.readNamespacedSecret({ name: answer.body.name, namespace }), job, 'its Secret');
    }
    const names = (await admin.batch.listNamespacedJob({ namespace })).items
      .map((job) => job.metadata!.name!)
      .filter((name) => /^burst\d+-/.test(name));
    assert.is(names.length, 13, `one job per submit, no duplicates: ${names}`);
  } finally {
    await server.stop();
    await link.close();
  }
});
outage.run();

// ---------------------------------------------------------------------------------------------
const teardown = suite('stack');
teardown('stops cleanly', async () => {
  await stack.stop();
});
teardown.run();

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { V1Job } from '@kubernetes/client-node';
import { parseJobTemplate, parseProfiles } from '../../lib/jobs/admin-config.ts';
import { resolveUser } from '../../lib/auth/user.ts';
import { buildJobObjects, buildNamespace, codeVolumesFor } from '../../lib/k8s/builders.ts';
import { parseJobSpec } from '../../lib/jobs/spec.ts';
import type { StoredCode } from '../../lib/uploads/reference.ts';

const settings = { jobTtlSeconds: 3600, jobExtraEnv: { DASK_GATEWAY: 'http://gw' }, helperImage: 'busybox:1.37' };
const user = resolveUser({ name: 'Alice.Smith@x.org', groups: [], admin: false, scopes: [], token: 'secret-token' });
const { profiles } = parseProfiles(`
gpu:
  image: pytorch:latest
  resources: {requests: {cpu: "2"}, limits: {nvidia.com/gpu: "1"}}
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  node_affinity_required: [{matchExpressions: [{key: kind, operator: In, values: [gpu]}]}]
`);

function build(input: Record<string, unknown>, extra: Partial<Parameters<typeof buildJobObjects>[3]> = {}) {
  return buildJobObjects(parseJobSpec({ name: 'train', ...input }), user, 'train-abcde', { settings, profiles, ...extra });
}

/** Plain env of every job, not from its Secret (lib/k8s/builders.ts outputsVolumeFor). */
const outputsEnvNames = ['KBATCH_JOB_NAME', 'KBATCH_OUTPUTS_DIR'];

const job = suite('buildJobObjects');
job('puts the job in the user namespace with user label and annotation', () => {
  const { job, namespace } = build({ image: 'python:3.12', command: ['python', 'main.py'] });
  assert.is(namespace, 'kbatch-alice-smith-x-org--af6fgwgmvk4cy76oyv4apfdv5w');
  assert.is(job.metadata!.namespace, namespace);
  assert.is(job.metadata!.name, 'train-abcde');
  assert.is(job.metadata!.annotations!['kbatch.jupyter.org/username'], 'Alice.Smith@x.org');
  assert.is(job.spec!.template.metadata!.labels!['kbatch.jupyter.org/username'], 'alice-smith-x-org--af6fgwgmvk4cy76oyv4apfdv5w');
  assert.is(job.spec!.ttlSecondsAfterFinished, 3600);
  assert.is(job.spec!.backoffLimit, 0);
});
job('keeps every env value in the Secret, none in the Job', () => {
  const { job, secret } = build({ image: 'python', env: { API_KEY: 'hunter2' } });
  const env = job.spec!.template.spec!.containers[0]!.env!.filter((e) => !outputsEnvNames.includes(e.name));
  assert.equal(
    env.map((e) => e.name),
    ['API_KEY', 'DASK_GATEWAY', 'JUPYTER_IMAGE', 'JUPYTER_IMAGE_SPEC', 'JUPYTERHUB_API_TOKEN'],
  );
  assert.ok(env.every((e) => e.value === undefined && e.valueFrom?.secretKeyRef?.name === 'train-abcde'));
  assert.is(Buffer.from(secret.data!.API_KEY!, 'base64').toString(), 'hunter2');
  assert.is(Buffer.from(secret.data!.JUPYTERHUB_API_TOKEN!, 'base64').toString(), 'secret-token');
  assert.not.ok(JSON.stringify(job).includes('hunter2'));
});
job('runs in /code with an unpacking init container for a ConfigMap upload', () => {
  const { job } = build({ image: 'python' }, { code: { kind: 'configmap', namespace: 'ns', name: 'kbatch-code-x' } });
  const pod = job.spec!.template.spec!;
  assert.is(pod.containers[0]!.workingDir, '/code');
  assert.equal(pod.containers[0]!.volumeMounts![0], { name: 'code', mountPath: '/code' });
  assert.is(pod.initContainers![0]!.name, 'unpack-code');
  assert.is(pod.volumes!.find((v) => v.name === 'code-archive')!.configMap!.name, 'kbatch-code-x');
  assert.is(pod.automountServiceAccountToken, false);
});
job('copies a PVC upload into the job scratch dir', () => {
  const { volumes, initContainers } = codeVolumesFor({ kind: 'pvc', namespace: 'ns', claim: 'kbatch-uploads', path: 'abc' }, 'busybox');
  assert.is(volumes[1]!.persistentVolumeClaim!.claimName, 'kbatch-uploads');
  assert.match(initContainers[0]!.command!.join(' '), /cp -a "\/uploads\/abc\/\." \/code/);
});
job('applies a profile, user resources winning', () => {
  const { job } = build({ profile: 'gpu', resources: { requests: { cpu: '4' } } });
  const pod = job.spec!.template.spec!;
  assert.is(pod.containers[0]!.image, 'pytorch:latest');
  assert.equal(pod.containers[0]!.resources, { requests: { cpu: '4' }, limits: { 'nvidia.com/gpu': '1' } });
  assert.is(pod.tolerations![0]!.key, 'nvidia.com/gpu');
  assert.is(
    pod.affinity!.nodeAffinity!.requiredDuringSchedulingIgnoredDuringExecution!.nodeSelectorTerms[0]!.matchExpressions![0]!.key,
    'kind',
  );
});
job('unknown profile is a 400 listing the known ones', () => {
  assert.throws(() => build({ profile: 'nope', image: 'x' }), /unknown profile "nope" \(available: gpu\)/);
});
job('an image is required from the spec or the profile', () => {
  assert.throws(() => build({}), /image: is required/);
});
job('indexed job arrays', () => {
  const { job } = build({ image: 'x', completions: 4, parallelism: 2 });
  assert.is(job.spec!.completionMode, 'Indexed');
  assert.is(job.spec!.completions, 4);
  assert.is(job.spec!.parallelism, 2);
});
job('user ttl cannot exceed the admin ttl', () => {
  assert.is(build({ image: 'x', ttlSecondsAfterFinished: 99999 }).job.spec!.ttlSecondsAfterFinished, 3600);
  assert.is(build({ image: 'x', ttlSecondsAfterFinished: 10 }).job.spec!.ttlSecondsAfterFinished, 10);
});
job('admin template merges (lists appended, scalars win) but cannot move the job', () => {
  const template = parseJobTemplate(`
apiVersion: batch/v1
kind: Job
metadata: {namespace: elsewhere, labels: {app.kubernetes.io/part-of: hub}}
spec:
  backoffLimit: 1
  template:
    spec:
      serviceAccountName: admin
      tolerations: [{key: hub.jupyter.org/dedicated, operator: Equal, value: user, effect: NoSchedule}]
`);
  const { job } = build({ image: 'x' }, { template });
  assert.is(job.metadata!.namespace, 'kbatch-alice-smith-x-org--af6fgwgmvk4cy76oyv4apfdv5w');
  assert.is(job.metadata!.labels!['app.kubernetes.io/part-of'], 'hub');
  assert.is(job.spec!.backoffLimit, 1);
  assert.is(job.spec!.template.spec!.tolerations![0]!.key, 'hub.jupyter.org/dedicated');
  assert.is(job.spec!.template.spec!.serviceAccountName, undefined);
});
job.run();

const admin = suite('buildNamespace');
admin('namespace carries the user', () => {
  const ns = buildNamespace({ name: 'bob', namespace: 'kbatch-bob' });
  assert.is(ns.metadata!.name, 'kbatch-bob');
  assert.is(ns.metadata!.annotations!['kbatch.jupyter.org/username'], 'bob');
  assert.is(ns.metadata!.labels!['kbatch.jupyter.org/username'], 'bob');
});
admin.run();

export type { V1Job };

const cronSuite = suite('buildCronJobObjects');
cronSuite('wraps the same job template and validates the schedule', async () => {
  const { buildCronJobObjects } = await import('../../lib/k8s/builders.ts');
  const { cronJob, secret } = buildCronJobObjects(parseJobSpec({ name: 'nightly', image: 'python' }), '@daily', user, 'nightly-abcde', {
    settings,
    profiles,
  });
  assert.is(cronJob.spec!.schedule, '@daily');
  assert.is(cronJob.spec!.concurrencyPolicy, 'Forbid');
  assert.is(cronJob.spec!.jobTemplate.spec!.template.spec!.containers[0]!.env![0]!.valueFrom!.secretKeyRef!.name, 'nightly-abcde');
  assert.is(secret.metadata!.name, 'nightly-abcde');
  assert.throws(
    () => buildCronJobObjects(parseJobSpec({ name: 'x', image: 'p' }), 'every day', user, 'x-abcde', { settings, profiles }),
    /schedule: "every day" is not a cron expression/,
  );
});
cronSuite.run();

const abandoned = suite('isAbandonedUpload');
abandoned('only expired uploads that no job owns', async () => {
  const { isAbandonedUpload } = await import('../../lib/k8s/builders.ts');
  const now = new Date('2026-01-02T00:00:00Z');
  const upload = (expires: string, owned = false) => ({
    metadata: {
      annotations: { 'kbatch.jupyter.org/upload-expires': expires },
      ownerReferences: owned ? [{ apiVersion: 'batch/v1', kind: 'Job', name: 'j', uid: 'u' }] : undefined,
    },
  });
  assert.ok(isAbandonedUpload(upload('2026-01-01T00:00:00Z'), now));
  assert.not.ok(isAbandonedUpload(upload('2026-01-03T00:00:00Z'), now));
  assert.not.ok(isAbandonedUpload(upload('2026-01-01T00:00:00Z', true), now));
  assert.not.ok(isAbandonedUpload({ metadata: {} }, now));
});
abandoned.run();

const owned = suite('objects owned from their create on');
const aliceOwner = { name: 'alice', namespace: 'kbatch-alice' };
const jobOwner = { apiVersion: 'batch/v1', kind: 'Job', name: 'train-abcde', uid: 'uid-1' };
owned('ownedBy puts the owner reference into the object itself, leaving the original untouched', async () => {
  const { ownedBy } = await import('../../lib/k8s/builders.ts');
  const { secret } = build({ image: 'python' });
  const withOwner = ownedBy(secret, jobOwner);
  assert.equal(withOwner.metadata!.ownerReferences, [jobOwner]);
  assert.is(withOwner.metadata!.name, 'train-abcde');
  assert.is(secret.metadata!.ownerReferences, undefined);
});
owned('code sent with a submit is owned by its Job and never looks unclaimed to the sweep', async () => {
  const { buildCodeConfigMap, isAbandonedUpload } = await import('../../lib/k8s/builders.ts');
  const configMap = buildCodeConfigMap(aliceOwner, 'kbatch-code-train-abcde', Buffer.from('x'), {
    sha256: 'a'.repeat(64),
    files: 1,
    ownerRef: jobOwner,
  });
  assert.equal(configMap.metadata!.ownerReferences, [jobOwner]);
  assert.is(configMap.metadata!.labels!['kbatch.jupyter.org/unclaimed-upload'], undefined);
  assert.is(configMap.metadata!.annotations!['kbatch.jupyter.org/upload-expires'], undefined);
  assert.not.ok(isAbandonedUpload(configMap, new Date('2100-01-01')));
});
owned('a standalone upload is labelled unclaimed and carries its expiry; owned code is not', async () => {
  const { buildCodeConfigMap, isAbandonedUpload } = await import('../../lib/k8s/builders.ts');
  const expiresAt = new Date('2026-01-01T00:00:00Z');
  const configMap = buildCodeConfigMap(aliceOwner, 'kbatch-code-x', Buffer.from('x'), { sha256: 'a'.repeat(64), files: 1, expiresAt });
  assert.is(configMap.metadata!.labels!['kbatch.jupyter.org/unclaimed-upload'], 'true');
  assert.is(configMap.metadata!.ownerReferences, undefined);
  assert.ok(isAbandonedUpload(configMap, new Date('2026-01-02T00:00:00Z')));
  const owned = buildCodeConfigMap(aliceOwner, 'kbatch-code-y', Buffer.from('x'), { sha256: 'a'.repeat(64), files: 1, ownerRef: jobOwner });
  assert.equal(Object.keys(owned.binaryData!), ['code.tgz']);
  assert.is(owned.metadata!.labels!['kbatch.jupyter.org/unclaimed-upload'], undefined);
});
owned.run();

const keys = suite('idempotency');
keys('the key is recorded as a hash of (user, key) on the Job only, with a hash of the request', async () => {
  const { idempotencyFor } = await import('../../lib/k8s/builders.ts');
  const idempotency = idempotencyFor(user.name, 'key-1', { spec: 1 });
  const { job } = build({ image: 'python' }, { idempotency });
  assert.is(job.metadata!.labels!['kbatch.jupyter.org/idempotency-key'], idempotency.label);
  assert.match(idempotency.label, /^[0-9a-f]{48}$/, 'a valid label value');
  assert.is(job.metadata!.annotations!['kbatch.jupyter.org/request-sha256'], idempotency.requestSha256);
  assert.is(job.spec!.template.metadata!.labels!['kbatch.jupyter.org/idempotency-key'], undefined, 'not on the pods');
  assert.not.ok(JSON.stringify(job).includes('key-1'));
});
keys('is stable for a retry, distinct across users, keys and requests', async () => {
  const { idempotencyFor } = await import('../../lib/k8s/builders.ts');
  const first = idempotencyFor('alice', 'k', { a: 1 });
  assert.equal(idempotencyFor('alice', 'k', { a: 1 }), first);
  assert.is.not(idempotencyFor('bob', 'k', { a: 1 }).label, first.label);
  assert.is.not(idempotencyFor('alice', 'k2', { a: 1 }).label, first.label);
  assert.is(idempotencyFor('alice', 'k', { a: 2 }).label, first.label);
  assert.is.not(idempotencyFor('alice', 'k', { a: 2 }).requestSha256, first.requestSha256);
  assert.match(first.nameSuffix, /^[a-z0-9]{5}$/);
});
keys('a CronJob carries the key, the Jobs it starts do not', async () => {
  const { buildCronJobObjects, idempotencyFor } = await import('../../lib/k8s/builders.ts');
  const idempotency = idempotencyFor('alice', 'k', {});
  const { cronJob } = buildCronJobObjects(parseJobSpec({ name: 'nightly', image: 'python' }), '@daily', user, 'nightly-abcde', {
    settings,
    profiles,
    idempotency,
  });
  assert.is(cronJob.metadata!.labels!['kbatch.jupyter.org/idempotency-key'], idempotency.label);
  assert.is(cronJob.spec!.jobTemplate.metadata!.labels!['kbatch.jupyter.org/idempotency-key'], undefined);
  assert.is(cronJob.spec!.jobTemplate.metadata!.annotations!['kbatch.jupyter.org/request-sha256'], undefined);
});
keys.run();

const outputs = suite('every job writes its outputs to the user volume at outputs/<job>');
outputs('mounts kbatch-uploads at /outputs with a subPathExpr of the job-name label, named by plain env', () => {
  const { job } = build({ image: 'python', env: { KBATCH_OUTPUTS_DIR: '/elsewhere', KBATCH_JOB_NAME: 'other' } });
  const pod = job.spec!.template.spec!;
  const container = pod.containers[0]!;
  assert.equal(
    container.volumeMounts!.find((m) => m.mountPath === '/outputs'),
    { name: 'outputs', mountPath: '/outputs', subPathExpr: 'outputs/$(KBATCH_JOB_NAME)' },
  );
  assert.equal(
    pod.volumes!.find((v) => v.name === 'outputs'),
    { name: 'outputs', persistentVolumeClaim: { claimName: 'kbatch-uploads' } },
  );
  const env = container.env!;
  const last = (name: string) => env.filter((e) => e.name === name).at(-1);
  // A later entry of the same name wins in Kubernetes: the user's env cannot move the outputs.
  assert.equal(last('KBATCH_JOB_NAME'), {
    name: 'KBATCH_JOB_NAME',
    valueFrom: { fieldRef: { fieldPath: "metadata.labels['batch.kubernetes.io/job-name']" } },
  });
  assert.equal(last('KBATCH_OUTPUTS_DIR'), { name: 'KBATCH_OUTPUTS_DIR', value: '/outputs' });
  assert.equal(pod.securityContext, { fsGroup: 1000, fsGroupChangePolicy: 'OnRootMismatch' }, 'a non-root job may write there');
  assert.ok(env.findIndex((e) => e.value === '/outputs') > env.findIndex((e) => e.valueFrom?.secretKeyRef?.key === 'KBATCH_OUTPUTS_DIR'));
});
outputs('a PVC upload and the outputs mount the same claim as two volumes (read-only code, writable outputs)', () => {
  const { job } = build(
    { image: 'python' },
    // Cast: the chunk list of a PVC upload is on its way out (the upload writer Job goes).
    { code: { kind: 'pvc', namespace: 'ns', claim: 'kbatch-uploads', path: 'abc' } as StoredCode },
  );
  const pod = job.spec!.template.spec!;
  assert.equal(
    pod.volumes!.filter((v) => v.persistentVolumeClaim).map((v) => [v.name, v.persistentVolumeClaim!.readOnly ?? false]),
    [
      ['uploads', true],
      ['outputs', false],
    ],
  );
});
outputs('cronjob runs get the same mount: the label names each run, so each has its own directory', async () => {
  const { buildCronJobObjects } = await import('../../lib/k8s/builders.ts');
  const { cronJob } = buildCronJobObjects(parseJobSpec({ name: 'nightly', image: 'python' }), '@daily', user, 'nightly-abcde', {
    settings,
    profiles,
  });
  const container = cronJob.spec!.jobTemplate.spec!.template.spec!.containers[0]!;
  assert.is(container.volumeMounts!.find((m) => m.name === 'outputs')!.subPathExpr, 'outputs/$(KBATCH_JOB_NAME)');
  assert.ok(container.env!.some((e) => e.name === 'KBATCH_JOB_NAME'));
});
outputs('an admin template cannot drop the mount (lists are appended)', () => {
  const template = parseJobTemplate('spec:\n  template:\n    spec:\n      volumes: [{name: scratch, emptyDir: {}}]\n');
  const { job } = build({ image: 'python' }, { template });
  const names = job.spec!.template.spec!.volumes!.map((v) => v.name);
  assert.ok(names.includes('outputs') && names.includes('scratch'), names.join(','));
});
outputs.run();

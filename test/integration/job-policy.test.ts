/**
 * Hostile and careless job specs through the real stack (Hub proxy, server as the kbatch identity,
 * control plane): each is a JSON 400 naming the field and leaves nothing in the user's namespace;
 * what the admin permits still runs, and the admin's namespace quota comes with the namespace.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startStack } from '../stack/stack.ts';
import { adminClients, client, codeForm, eventually, type ApiResponse } from './helpers.ts';

const stack = await startStack({
  KBATCH_ALLOWED_TOLERATION_KEYS: 'dedicated',
  KBATCH_MAX_JOB_RESOURCES: '{"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "2"}',
  KBATCH_NAMESPACE_QUOTA: '{"requests.cpu": "8", "count/jobs.batch": "20"}',
  // With a quota on requests.cpu every pod must request cpu; the defaults give those that do not.
  KBATCH_NAMESPACE_LIMIT_RANGE: '{"defaultRequest": {"cpu": "100m"}, "default": {"cpu": "1"}}',
});
const alice = client(stack.serviceUrl, stack.hub.tokens.alice);
const bob = client(stack.serviceUrl, stack.hub.tokens.bob);
const admin = adminClients(stack.cluster.adminKubeconfig);

/** `also`: the job policy is checked when the Job is built, where the manifest's path may not be known yet. */
function assertRefused(res: ApiResponse, field: string, also?: string) {
  assert.is(res.status, 400, res.text);
  assert.ok((res.headers.get('content-type') ?? '').includes('application/json'), res.text);
  assert.is(res.body.status, 400);
  assert.ok([field, also].includes(res.body.field), res.text);
  assert.ok(res.body.detail.startsWith(`${res.body.field}: `), res.body.detail);
}

/** Nothing of the user's: no Job, CronJob, Secret or ConfigMap (the namespace itself may exist). */
async function assertNothingCreated(namespace: string) {
  const exists = await admin.core.readNamespace({ name: namespace }).then(
    () => true,
    () => false,
  );
  if (!exists) return;
  const batch = await admin.batch.listNamespacedJob({ namespace });
  assert.equal(
    batch.items.map((j) => j.metadata!.name),
    [],
  );
  const secrets = await admin.core.listNamespacedSecret({ namespace, labelSelector: 'app.kubernetes.io/managed-by=kbatch' });
  assert.equal(
    secrets.items.map((s) => s.metadata!.name),
    [],
  );
  const configMaps = await admin.core.listNamespacedConfigMap({ namespace, labelSelector: 'app.kubernetes.io/managed-by=kbatch' });
  assert.equal(
    configMaps.items.map((c) => c.metadata!.name),
    [],
  );
}

const spec = { name: 'evil', image: 'busybox', command: ['true'] };
const nativeCases: [string, Record<string, unknown>, string][] = [
  ['a million cpus', { resources: { requests: { cpu: '1e6' } } }, 'resources.requests.cpu'],
  ['an exbibyte of memory', { resources: { limits: { memory: '1Ei' } } }, 'resources.limits.memory'],
  ['100k GPUs', { resources: { limits: { 'nvidia.com/gpu': 100000 } } }, 'resources.limits.nvidia.com/gpu'],
  ['1e308 cpus as a number', { resources: { requests: { cpu: 1e308 } } }, 'resources.requests.cpu'],
  ['limits below requests', { resources: { requests: { memory: '2Gi' }, limits: { memory: '1Gi' } } }, 'resources.limits.memory'],
  ['a fractional retry count', { backoffLimit: 1.5 }, 'backoffLimit'],
  ['a negative array size', { completions: -1 }, 'completions'],
  ['a list where env goes', { env: ['A=1'] }, 'env'],
  ['constructor as a profile', { profile: 'constructor' }, 'profile'],
  ['__proto__ as a profile', { profile: '__proto__' }, 'profile'],
  ['toString as a profile', { profile: 'toString' }, 'profile'],
  ['a wildcard toleration', { tolerations: [{ operator: 'Exists' }] }, 'tolerations[0]'],
  [
    'a control-plane toleration',
    { tolerations: [{ key: 'node-role.kubernetes.io/control-plane', operator: 'Exists', effect: 'NoSchedule' }] },
    'tolerations[0].key',
  ],
  [
    'pinning to a node by name',
    { nodeAffinityRequired: [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: ['kwok-node-0'] }] }] },
    'nodeAffinityRequired[0].matchFields',
  ],
  [
    'a node label the admin did not allow',
    { nodeAffinityRequired: [{ matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: ['x'] }] }] },
    'nodeAffinityRequired[0].matchExpressions[0].key',
  ],
];

const native = suite('hostile native submits are JSON 400s naming the field, and create nothing');
for (const [what, patch, field] of nativeCases) {
  native(`JSON body: ${what}`, async () => assertRefused(await bob('POST', 'api/v1/jobs', { json: { ...spec, ...patch } }), field));
}
native('multipart spec field with code: the same schema, and the stored code is removed', async () => {
  for (const [, patch, field] of nativeCases.slice(0, 5)) {
    assertRefused(await bob('POST', 'api/v1/jobs', { form: codeForm({ 'main.py': 'print(1)' }, { ...spec, ...patch }) }), field);
  }
});
native('a prototype key is refused by name', async () => {
  const res = await bob('POST', 'api/v1/jobs', {
    json: JSON.parse('{"name": "evil", "image": "busybox", "__proto__": {"hostNetwork": true}}'),
  });
  assertRefused(res, '__proto__');
});
native('a 100,000-deep spec is a 400, and the server lives on', async () => {
  const deep = `{"name": "evil", "image": "busybox", "labels": ${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}}`;
  const res = await fetch(new URL('api/v1/jobs', stack.serviceUrl), {
    method: 'POST',
    headers: { authorization: `token ${stack.hub.tokens.bob}`, 'content-type': 'application/json' },
    body: deep,
  });
  const text = await res.text();
  assert.is(res.status, 400, text);
  assert.is(JSON.parse(text).status, 400);
  assert.is((await bob('GET', 'authorized')).status, 200);
});
native("nothing was created in bob's namespace", () => assertNothingCreated('kbatch-bob'));
native.run();

/** The body the upstream Python CLI (0.5.0b1) posts: V1Job.to_dict(), snake_case, most fields null. */
function upstreamJob(pod: Record<string, unknown> = {}, container: Record<string, unknown> = {}) {
  return {
    api_version: 'batch/v1',
    kind: 'Job',
    metadata: { generate_name: 'evil-', labels: {}, annotations: {}, name: null, namespace: null },
    spec: {
      backoff_limit: 0,
      ttl_seconds_after_finished: 300,
      parallelism: null,
      template: {
        metadata: { labels: {}, annotations: {} },
        spec: {
          restart_policy: 'Never',
          containers: [
            {
              name: 'job',
              image: 'busybox',
              command: ['true'],
              args: null,
              env: [],
              resources: { limits: {}, requests: {}, claims: null },
              working_dir: '/code',
              ...container,
            },
          ],
          tolerations: null,
          affinity: null,
          ...pod,
        },
      },
    },
    status: null,
  };
}

const upstream = suite('hostile upstream (kbatch-proxy) submits are JSON 400s naming the manifest field');
const pod = 'job.spec.template.spec';
const upstreamCases: [string, unknown, string, string?][] = [
  [
    'a wildcard toleration',
    upstreamJob({ tolerations: [{ key: null, operator: 'Exists', effect: null, value: null, toleration_seconds: null }] }),
    `${pod}.tolerations[0]`,
    'tolerations[0]',
  ],
  [
    'pinning to a node by name',
    upstreamJob({
      affinity: {
        node_affinity: {
          required_during_scheduling_ignored_during_execution: {
            node_selector_terms: [{ match_fields: [{ key: 'metadata.name', operator: 'In', values: ['n'] }] }],
          },
        },
      },
    }),
    `${pod}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields`,
    'nodeAffinityRequired[0].matchFields',
  ],
  [
    'huge memory',
    upstreamJob({}, { resources: { limits: { memory: '1Ei' } } }),
    `${pod}.containers[0].resources.limits.memory`,
    'resources.limits.memory',
  ],
  ['a fractional backoff limit', { ...upstreamJob(), spec: { ...upstreamJob().spec, backoff_limit: 0.5 } }, 'job.spec.backoffLimit'],
  ['a privileged container', upstreamJob({}, { security_context: { privileged: true } }), `${pod}.containers[0].securityContext`],
  ['a map where env goes', upstreamJob({}, { env: { A: '1' } }), `${pod}.containers[0].env`],
];
for (const [what, job, field, also] of upstreamCases) {
  upstream(`jobs: ${what}`, async () => assertRefused(await bob('POST', 'jobs/', { json: { job, code: null } }), field, also));
}
upstream('cronjobs: a wildcard toleration in the job template', async () => {
  const job = upstreamJob({ tolerations: [{ operator: 'Exists' }] });
  const cronJob = {
    api_version: 'batch/v1',
    kind: 'CronJob',
    metadata: { generate_name: 'evil-' },
    spec: { schedule: '@daily', job_template: { spec: job.spec } },
  };
  assertRefused(
    await bob('POST', 'cronjobs/', { json: { job: cronJob } }),
    'job.spec.jobTemplate.spec.template.spec.tolerations[0]',
    'tolerations[0]',
  );
});
upstream('a 100,000-deep manifest is a 400, and the server lives on', async () => {
  const deep = `{"job": {"kind": "Job", "status": ${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}}}`;
  for (const path of ['jobs/', 'cronjobs/']) {
    const res = await fetch(new URL(path, stack.serviceUrl), {
      method: 'POST',
      headers: { authorization: `token ${stack.hub.tokens.bob}`, 'content-type': 'application/json' },
      body: deep,
    });
    const text = await res.text();
    assert.is(res.status, 400, `${path}: ${text}`);
    assert.is(JSON.parse(text).status, 400);
  }
  assert.is((await bob('GET', 'authorized')).status, 200);
});
upstream('Object members as manifest keys are refused by name', async () => {
  const job = { ...upstreamJob(), constructor: { name: 'x' } };
  assertRefused(await bob('POST', 'jobs/', { json: { job } }), 'job.constructor');
});
upstream("nothing was created in bob's namespace", () => assertNothingCreated('kbatch-bob'));
upstream.run();

const permitted = suite('what the admin permits is accepted');
permitted('an allowed toleration key runs, and the namespace came with its quota and limit range', async () => {
  const toleration = { key: 'dedicated', operator: 'Equal', value: 'batch', effect: 'NoSchedule' };
  const res = await alice('POST', 'api/v1/jobs', {
    json: { ...spec, name: 'ok', tolerations: [toleration], resources: { requests: { cpu: '500m' }, limits: { cpu: '4' } } },
  });
  assert.is(res.status, 201, res.text);
  const job = await admin.batch.readNamespacedJob({ namespace: 'kbatch-alice', name: res.body.name });
  assert.equal(JSON.parse(JSON.stringify(job.spec!.template.spec!.tolerations)), [toleration]);
  const quota = await admin.core.readNamespacedResourceQuota({ namespace: 'kbatch-alice', name: 'kbatch' });
  assert.equal(quota.spec!.hard, { 'requests.cpu': '8', 'count/jobs.batch': '20' });
  const range = await admin.core.readNamespacedLimitRange({ namespace: 'kbatch-alice', name: 'kbatch' });
  assert.is(range.spec!.limits[0]!.defaultRequest!.cpu, '100m');
  // The quota admits the pod because it requests cpu (the limit range would give it a request otherwise).
  await eventually(
    'the job to succeed under the quota',
    async () => {
      const detail = await alice('GET', `api/v1/jobs/${res.body.name}`);
      return detail.body.state === 'succeeded';
    },
    60_000,
  );
});
permitted('a toleration exactly as a profile sets it (the upstream CLI bakes profiles in) is accepted', async () => {
  const job = upstreamJob(
    { tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule', value: null, toleration_seconds: null }] },
    { resources: { limits: { 'nvidia.com/gpu': '1' }, requests: {} } },
  );
  const res = await alice('POST', 'jobs/', { json: { job, code: null } });
  assert.is(res.status, 200, res.text);
});
permitted.run();

const teardown = suite('stack');
teardown('stops cleanly', async () => {
  await stack.stop();
});
teardown.run();

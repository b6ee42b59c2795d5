import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, loadSettings } from '../../lib/config.ts';
import { BadRequest } from '../../lib/http/errors.ts';
import { parseProfiles } from '../../lib/jobs/admin-config.ts';
import { buildJobObjects, buildNamespacePolicy, type JobSettings } from '../../lib/k8s/builders.ts';
import { parseJobSpec } from '../../lib/jobs/spec.ts';
import { specFromUpstreamManifest } from '../../lib/upstream/manifest.ts';

const base: JobSettings = { jobTtlSeconds: 3600, jobExtraEnv: {}, helperImage: 'busybox' };
const { profiles } = parseProfiles(`
gpu:
  image: pytorch
  resources: {requests: {cpu: "2"}, limits: {nvidia.com/gpu: "1"}}
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  node_affinity_required: [{matchExpressions: [{key: kind, operator: In, values: [gpu]}]}]
pinned:
  node_affinity_required: [{matchFields: [{key: metadata.name, operator: In, values: [node-7]}]}]
`);

function build(input: Record<string, unknown>, settings: Partial<JobSettings> = {}) {
  return buildJobObjects(
    parseJobSpec({ name: 'job', image: 'python', ...input }),
    { name: 'alice', namespace: 'kbatch-alice' },
    'job-abcde',
    { settings: { ...base, ...settings }, profiles },
  );
}

function refuses(input: Record<string, unknown>, field: string, words: string, settings: Partial<JobSettings> = {}) {
  try {
    build(input, settings);
  } catch (error) {
    assert.instance(error, BadRequest);
    assert.is((error as BadRequest).field, field, (error as Error).message);
    assert.ok((error as Error).message.includes(words), (error as Error).message);
    return;
  }
  assert.unreachable(`expected a 400 naming ${field}`);
}

const resources = suite('per-job resource maximums (defaults)');
const tooMuch: [string, Record<string, string>, string][] = [
  ['a million cpus', { cpu: '1e6' }, 'resources.requests.cpu'],
  ['an exbibyte of memory', { memory: '1Ei' }, 'resources.requests.memory'],
  ['100k GPUs', { 'nvidia.com/gpu': '100000' }, 'resources.requests.nvidia.com/gpu'],
  ['a petabyte of scratch', { 'ephemeral-storage': '1P' }, 'resources.requests.ephemeral-storage'],
  ['just over the cpu maximum', { cpu: '64001m' }, 'resources.requests.cpu'],
];
for (const [what, requests, field] of tooMuch)
  resources(`refuses ${what}`, () => refuses({ resources: { requests } }, field, 'more than the maximum'));
resources('refuses resources not on the list', () => {
  refuses({ resources: { limits: { 'hugepages-1Gi': '1Gi' } } }, 'resources.limits.hugepages-1Gi', 'not a resource jobs may request');
  refuses({ resources: { requests: { 'example.com/dongle': '1' } } }, 'resources.requests.example.com/dongle', 'allowed: cpu, memory');
});
resources('accepts exactly the maximum', () => {
  const { job } = build({ resources: { requests: { cpu: '64', memory: '256Gi' }, limits: { cpu: '64000m', 'nvidia.com/gpu': '8' } } });
  assert.is(job.spec!.template.spec!.containers[0]!.resources!.limits!['nvidia.com/gpu'], '8');
});
resources('follows the admin maximums', () => {
  const settings = { maxJobResources: { cpu: '2', 'example.com/dongle': '1' } };
  refuses({ resources: { requests: { cpu: '3' } } }, 'resources.requests.cpu', '(2)', settings);
  refuses({ resources: { requests: { memory: '1Gi' } } }, 'resources.requests.memory', 'allowed: cpu, example.com/dongle', settings);
  build({ resources: { requests: { 'example.com/dongle': '1' } } }, settings);
});
resources('a limit below the profile request is refused, naming the limit', () => {
  refuses({ profile: 'gpu', resources: { limits: { cpu: '1' } } }, 'resources.limits.cpu', 'at least its request');
});
resources.run();

const scheduling = suite('scheduling: only what the admin permits');
scheduling('a wildcard toleration is always refused', () => {
  for (const toleration of [{ operator: 'Exists' }, { key: '', operator: 'Exists' }, { operator: 'Exists', effect: 'NoSchedule' }]) {
    refuses({ tolerations: [toleration] }, 'tolerations[0]', 'never allowed', { allowedTolerationKeys: ['dedicated'] });
  }
});
scheduling('a toleration key the admin did not allow is refused, pointing at profiles', () => {
  refuses(
    { tolerations: [{ key: 'node-role.kubernetes.io/control-plane', operator: 'Exists', effect: 'NoSchedule' }] },
    'tolerations[0].key',
    'profile',
  );
  refuses({ tolerations: [{ key: 'x', operator: 'Exists' }] }, 'tolerations[0].key', 'the admin allows none');
});
scheduling('a toleration key the admin allows is accepted', () => {
  const { job } = build(
    { tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'batch', effect: 'NoSchedule' }] },
    { allowedTolerationKeys: ['dedicated'] },
  );
  assert.is(job.spec!.template.spec!.tolerations![0]!.key, 'dedicated');
});
scheduling('a toleration exactly as a profile sets it is accepted (the upstream CLI bakes profiles in)', () => {
  build({ tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }] });
  refuses({ tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists' }] }, 'tolerations[0].key', 'profile');
});
scheduling('matchFields (pinning to a node by name) is refused for users', () => {
  refuses(
    { nodeAffinityRequired: [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: ['control-plane-1'] }] }] },
    'nodeAffinityRequired[0].matchFields',
    'by name',
    {
      allowedNodeLabelKeys: ['metadata.name'],
    },
  );
});
scheduling('node label keys only where the admin allows them', () => {
  refuses(
    { nodeAffinityRequired: [{ matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: ['n1'] }] }] },
    'nodeAffinityRequired[0].matchExpressions[0].key',
    'the admin allows none',
  );
  build(
    { nodeAffinityRequired: [{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }] }] },
    { allowedNodeLabelKeys: ['zone'] },
  );
  build({ nodeAffinityRequired: [{ matchExpressions: [{ key: 'kind', operator: 'In', values: ['gpu'] }] }] });
});
scheduling('profiles may set what users may not, and apply it', () => {
  const { job } = build({ profile: 'pinned' });
  assert.is(
    job.spec!.template.spec!.affinity!.nodeAffinity!.requiredDuringSchedulingIgnoredDuringExecution!.nodeSelectorTerms[0]!.matchFields![0]!
      .key,
    'metadata.name',
  );
});
scheduling('the upstream manifest goes through the same rules', () => {
  const manifest = {
    kind: 'Job',
    metadata: { generate_name: 'x-' },
    spec: { template: { spec: { containers: [{ image: 'alpine' }], tolerations: [{ operator: 'Exists' }] } } },
  };
  const spec = specFromUpstreamManifest(manifest);
  assert.throws(
    () => buildJobObjects(spec, { name: 'a', namespace: 'kbatch-a' }, 'x-abcde', { settings: base, profiles }),
    (e: unknown) => (e as BadRequest).field === 'tolerations[0]',
  );
});
scheduling.run();

const names = suite('profile names are looked up as names, never through prototypes');
for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
  names(name, () => refuses({ profile: name }, 'profile', 'unknown profile'));
}
names('a plain-object profile table is read through own properties too', () => {
  assert.throws(
    () =>
      buildJobObjects(parseJobSpec({ name: 'a', image: 'x', profile: 'toString' }), { name: 'a', namespace: 'kbatch-a' }, 'a-abcde', {
        settings: base,
        profiles: {},
      }),
    /unknown profile/,
  );
});
names.run();

const atStart = suite('profiles are checked against the policy at start');
atStart('a profile over the maximums stops the start', () => {
  assert.throws(
    () => parseProfiles('big: {resources: {limits: {nvidia.com/gpu: "100"}}}'),
    (e: unknown) => e instanceof ConfigError && /big.*more than the maximum/.test((e as Error).message),
  );
  assert.throws(
    () => parseProfiles('odd: {resources: {requests: {example.com/x: "1"}}}'),
    (e: unknown) => e instanceof ConfigError && /not a resource/.test((e as Error).message),
  );
});
atStart('a profile whose limit is below its request stops the start', () => {
  assert.throws(
    () => parseProfiles('p: {resources: {requests: {memory: 2Gi}, limits: {memory: 1Gi}}}'),
    (e: unknown) => e instanceof ConfigError && /at least its request/.test((e as Error).message),
  );
});
atStart('a profile with a wildcard toleration stops the start', () => {
  assert.throws(
    () => parseProfiles('p: {tolerations: [{operator: Exists}]}'),
    (e: unknown) => e instanceof ConfigError && /never allowed/.test((e as Error).message),
  );
});
atStart('profiles named like Object members are ordinary entries', () => {
  const { profiles: table } = parseProfiles('constructor: {image: a}\ntoString: {image: b}');
  assert.is(table.get('constructor')!.image, 'a');
  assert.is(table.get('toString')!.image, 'b');
});
atStart.run();

const quota = suite('namespace quota and limit range (pure builders)');
quota('nothing when unset', () => assert.equal(buildNamespacePolicy('kbatch-a', {}), {}));
quota('a ResourceQuota and a LimitRange from the admin settings', () => {
  const { quota: rq, limitRange } = buildNamespacePolicy('kbatch-a', {
    namespaceQuota: { 'requests.cpu': '8', 'count/jobs.batch': '50' },
    namespaceLimitRange: { default: { cpu: '1' }, defaultRequest: { cpu: '100m' }, max: { memory: '8Gi' } },
  });
  assert.is(rq!.kind, 'ResourceQuota');
  assert.is(rq!.metadata!.namespace, 'kbatch-a');
  assert.equal(rq!.spec!.hard, { 'requests.cpu': '8', 'count/jobs.batch': '50' });
  assert.is(limitRange!.kind, 'LimitRange');
  assert.equal(limitRange!.spec!.limits, [
    { type: 'Container', default: { cpu: '1' }, defaultRequest: { cpu: '100m' }, max: { memory: '8Gi' } },
  ]);
});
quota.run();

const settings = suite('policy settings');
settings('defaults: the documented maximums, no user scheduling, no quota', () => {
  const s = loadSettings({});
  assert.equal(s.maxJobResources, { cpu: '64', memory: '256Gi', 'ephemeral-storage': '100Gi', 'nvidia.com/gpu': '8', 'amd.com/gpu': '8' });
  assert.equal([s.allowedTolerationKeys, s.allowedNodeLabelKeys, s.namespaceQuota, s.namespaceLimitRange], [[], [], undefined, undefined]);
});
settings('read from the environment', () => {
  const s = loadSettings({
    KBATCH_MAX_JOB_RESOURCES: '{"cpu": 4, "memory": "8Gi"}',
    KBATCH_ALLOWED_TOLERATION_KEYS: 'dedicated, spot',
    KBATCH_ALLOWED_NODE_LABEL_KEYS: 'zone',
    KBATCH_NAMESPACE_QUOTA: '{"requests.cpu": "16", "pods": 100}',
    KBATCH_NAMESPACE_LIMIT_RANGE: '{"default": {"cpu": "1"}}',
  });
  assert.equal(s.maxJobResources, { cpu: '4', memory: '8Gi' });
  assert.equal(s.allowedTolerationKeys, ['dedicated', 'spot']);
  assert.equal(s.allowedNodeLabelKeys, ['zone']);
  assert.equal(s.namespaceQuota, { 'requests.cpu': '16', pods: '100' });
  assert.equal(s.namespaceLimitRange, { default: { cpu: '1' } });
});
settings('bad values stop the start with a message', () => {
  const bad: [Record<string, string>, RegExp][] = [
    [{ KBATCH_MAX_JOB_RESOURCES: '[1]' }, /KBATCH_MAX_JOB_RESOURCES must be a JSON object/],
    [{ KBATCH_MAX_JOB_RESOURCES: '{"cpu": "lots"}' }, /"lots" for cpu is not a quantity/],
    [{ KBATCH_NAMESPACE_QUOTA: 'pods=3' }, /KBATCH_NAMESPACE_QUOTA must be a JSON object/],
    [{ KBATCH_NAMESPACE_LIMIT_RANGE: '{"maximum": {}}' }, /unknown key "maximum"/],
    [{ KBATCH_NAMESPACE_LIMIT_RANGE: '{"max": {"cpu": "-1"}}' }, /not a quantity/],
  ];
  for (const [env, message] of bad)
    assert.throws(
      () => loadSettings(env),
      (e: unknown) => e instanceof ConfigError && message.test((e as Error).message),
    );
});
settings.run();

const early = suite('checkSubmission: the admin-dependent checks, before anything is stored');
early('resolves the profile and image, and refuses what buildJobObjects would', async () => {
  const { checkSubmission } = await import('../../lib/k8s/builders.ts');
  assert.is(checkSubmission(parseJobSpec({ name: 'a', profile: 'gpu' }), { settings: base, profiles }).image, 'pytorch');
  assert.throws(
    () => checkSubmission(parseJobSpec({ name: 'a' }), { settings: base, profiles }),
    (e: unknown) => (e as BadRequest).field === 'image',
  );
  assert.throws(
    () => checkSubmission(parseJobSpec({ name: 'a', image: 'x', resources: { limits: { cpu: '65' } } }), { settings: base, profiles }),
    (e: unknown) => (e as BadRequest).field === 'resources.limits.cpu',
  );
});
early.run();

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BadRequest } from '../../lib/http/errors.ts';
import { specFromUpstreamManifest } from '../../lib/upstream/manifest.ts';
import { rejects } from './field-errors.ts';

const upstream = suite('specFromUpstreamManifest (the Python CLI body)');
const manifest = {
  api_version: 'batch/v1',
  kind: 'Job',
  metadata: { annotations: {}, generate_name: 'my-job-', labels: {}, name: null, namespace: null },
  spec: {
    backoff_limit: 0,
    ttl_seconds_after_finished: 300,
    parallelism: null,
    template: {
      metadata: { annotations: {}, labels: {}, name: 'my-job-pod' },
      spec: {
        restart_policy: 'Never',
        tolerations: [{ effect: 'NoSchedule', key: 'k', operator: 'Equal', toleration_seconds: null, value: 'v' }],
        affinity: {
          node_affinity: {
            required_during_scheduling_ignored_during_execution: {
              node_selector_terms: [{ match_expressions: [{ key: 'a', operator: 'In', values: ['b'] }], match_fields: [] }],
            },
            preferred_during_scheduling_ignored_during_execution: null,
          },
          pod_affinity: null,
        },
        containers: [
          {
            name: 'job',
            image: 'alpine',
            command: ['sh', '-c'],
            args: ['python main.py'],
            env: [{ name: 'A', value: '1', value_from: null }],
            resources: { limits: { memory: '1G' }, requests: { cpu: '1' } },
            working_dir: '/code',
            volume_mounts: null,
          },
        ],
      },
    },
  },
  status: null,
};
upstream('reads the upstream CLI manifest', () => {
  const parsed = specFromUpstreamManifest(manifest);
  assert.is(parsed.name, 'my-job');
  assert.is(parsed.image, 'alpine');
  assert.equal(parsed.env, { A: '1' });
  assert.equal(parsed.tolerations, [{ effect: 'NoSchedule', key: 'k', operator: 'Equal', value: 'v' }]);
  assert.equal(parsed.nodeAffinityRequired, [{ matchExpressions: [{ key: 'a', operator: 'In', values: ['b'] }] }]);
});
const withPod = (patch: Record<string, unknown>) => ({
  ...manifest,
  spec: { ...manifest.spec, template: { ...manifest.spec.template, spec: { ...manifest.spec.template.spec, ...patch } } },
});
upstream(
  'refuses a namespace',
  () =>
    void rejects(
      { ...manifest, metadata: { ...manifest.metadata, namespace: 'kube-system' } },
      'job.metadata.namespace',
      specFromUpstreamManifest,
    ),
);
upstream(
  'refuses serviceAccountName',
  () => void rejects(withPod({ service_account_name: 'admin' }), 'job.spec.template.spec.serviceAccountName', specFromUpstreamManifest),
);
upstream(
  'refuses hostPath volumes',
  () =>
    void rejects(
      withPod({ volumes: [{ name: 'h', host_path: { path: '/' } }] }),
      'job.spec.template.spec.volumes',
      specFromUpstreamManifest,
    ),
);
upstream(
  'refuses hostNetwork',
  () => void rejects(withPod({ host_network: true }), 'job.spec.template.spec.hostNetwork', specFromUpstreamManifest),
);
upstream('refuses a privileged container', () => {
  const container = { ...manifest.spec.template.spec.containers[0], security_context: { privileged: true } };
  rejects(withPod({ containers: [container] }), 'job.spec.template.spec.containers[0].securityContext', specFromUpstreamManifest);
});
upstream('accepts bool fields as false/absent instead of crashing (upstream bug)', () => {
  const container = { ...manifest.spec.template.spec.containers[0], tty: null, stdin: null };
  assert.is(specFromUpstreamManifest(withPod({ containers: [container] })).image, 'alpine');
});
upstream.run();

const cron = suite('specFromUpstreamCronJob');
cron('reads the upstream CLI cronjob and its schedule', async () => {
  const { specFromUpstreamCronJob } = await import('../../lib/upstream/manifest.ts');
  const { spec: parsed, schedule } = specFromUpstreamCronJob({
    api_version: 'batch/v1',
    kind: 'CronJob',
    metadata: { generate_name: 'nightly-cron-', labels: {}, annotations: {} },
    spec: {
      schedule: '0 22 * * 1-5',
      starting_deadline_seconds: 300,
      job_template: { metadata: { generate_name: 'nightly-cron-' }, spec: manifest.spec },
    },
  });
  assert.is(schedule, '0 22 * * 1-5');
  assert.is(parsed.name, 'nightly-cron');
  assert.is(parsed.image, 'alpine');
});
cron('refuses fields outside the allow-list', async () => {
  const { specFromUpstreamCronJob } = await import('../../lib/upstream/manifest.ts');
  rejects(
    { kind: 'CronJob', spec: { schedule: '* * * * *', suspend: true, job_template: { spec: manifest.spec } } },
    'job.spec.suspend',
    specFromUpstreamCronJob,
  );
});
cron.run();
const upstreamHostile = suite('specFromUpstreamManifest refuses hostile manifests, naming the manifest field');
const container = manifest.spec.template.spec.containers[0]!;
const withContainer = (patch: Record<string, unknown>) => withPod({ containers: [{ ...container, ...patch }] });
const upstreamCases: [string, unknown, string][] = [
  ['a list as the manifest', [manifest], 'job'],
  ['a list as the spec', { ...manifest, spec: [manifest.spec] }, 'job.spec'],
  ['two containers', withPod({ containers: [container, container] }), 'job.spec.template.spec.containers'],
  ['no container', withPod({ containers: [] }), 'job.spec.template.spec.containers'],
  ['a fractional backoff limit', { ...manifest, spec: { ...manifest.spec, backoff_limit: 1.5 } }, 'job.spec.backoffLimit'],
  ['a negative backoff limit', { ...manifest, spec: { ...manifest.spec, backoff_limit: -1 } }, 'job.spec.backoffLimit'],
  ['a huge parallelism', { ...manifest, spec: { ...manifest.spec, parallelism: 1e6, completions: 1e6 } }, 'job.spec.parallelism'],
  ['a map where env goes', withContainer({ env: { A: '1' } }), 'job.spec.template.spec.containers[0].env'],
  ['a number as the image', withContainer({ image: 7 }), 'job.spec.template.spec.containers[0].image'],
  ['another working directory', withContainer({ working_dir: '/etc' }), 'job.spec.template.spec.containers[0].workingDir'],
  [
    'huge memory',
    withContainer({ resources: { limits: { memory: '1e308' } } }),
    'job.spec.template.spec.containers[0].resources.limits.memory',
  ],
  [
    'a limit below its request',
    withContainer({ resources: { requests: { cpu: '2' }, limits: { cpu: '1' } } }),
    'job.spec.template.spec.containers[0].resources.limits.cpu',
  ],
  [
    'an unknown toleration operator',
    withPod({ tolerations: [{ key: 'k', operator: 'All' }] }),
    'job.spec.template.spec.tolerations[0].operator',
  ],
  ['a prototype key in the pod spec', withPod(JSON.parse('{"__proto__": {"host_network": true}}')), 'job.spec.template.spec.__proto__'],
  ['a bad label', { ...manifest, metadata: { ...manifest.metadata, labels: { 'a b': 'c' } } }, 'job.metadata.labels.a b'],
  ['another kind', { ...manifest, kind: 'Pod' }, 'job.kind'],
];
for (const [what, input, field] of upstreamCases) upstreamHostile(what, () => void rejects(input, field, specFromUpstreamManifest));
upstreamHostile('a deeply nested manifest is a 400', () => {
  let deep: unknown = {};
  for (let i = 0; i < 100_000; i++) deep = { a: deep };
  rejects({ ...manifest, status: deep }, 'body', specFromUpstreamManifest);
});
upstreamHostile.run();

const terms = suite('inManifestTerms: policy errors restated where the manifest holds the field');
terms('job and cronjob paths', async () => {
  const { inManifestTerms } = await import('../../lib/upstream/manifest.ts');
  const job = inManifestTerms(new BadRequest('tolerations[0]: never allowed', 'tolerations[0]'), 'job') as BadRequest;
  assert.is(job.field, 'job.spec.template.spec.tolerations[0]');
  assert.is(job.message, 'job.spec.template.spec.tolerations[0]: never allowed');
  const cron = inManifestTerms(new BadRequest('resources.limits.cpu: too much', 'resources.limits.cpu'), 'cronjob') as BadRequest;
  assert.is(cron.field, 'job.spec.jobTemplate.spec.template.spec.containers[0].resources.limits.cpu');
  const other = new Error('x');
  assert.is(inManifestTerms(other, 'job'), other);
});
terms.run();

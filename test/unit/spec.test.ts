import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BadRequest } from '../../lib/http/errors.ts';
import { parseJobSpec } from '../../lib/k8s/spec.ts';
import { specFromUpstreamManifest } from '../../lib/k8s/upstream-manifest.ts';

function rejects(input: unknown, field: string, parse: (v: unknown) => unknown = parseJobSpec) {
  try {
    parse(input);
  } catch (error) {
    assert.instance(error, BadRequest);
    assert.is((error as BadRequest).field, field, (error as Error).message);
    return;
  }
  assert.unreachable(`expected a 400 naming ${field}`);
}

const spec = suite('parseJobSpec (native allow-list)');
spec('accepts every allowed field', () => {
  const parsed = parseJobSpec({
    name: 'train',
    image: 'python:3.12',
    command: ['python', 'main.py'],
    args: ['--epochs', '3'],
    env: { A: '1', B: 2 },
    profile: 'gpu',
    resources: { requests: { cpu: '500m', memory: '1Gi' }, limits: { 'nvidia.com/gpu': '1' } },
    ttlSecondsAfterFinished: 60,
    backoffLimit: 2,
    parallelism: 2,
    completions: 4,
    labels: { team: 'ml' },
  });
  assert.is(parsed.name, 'train');
  assert.equal(parsed.env, { A: '1', B: '2' });
  assert.is(parsed.completions, 4);
});
spec('requires a name', () => rejects({ image: 'x' }, 'name'));
spec('refuses unknown fields, naming them', () => rejects({ name: 'a', namespace: 'kube-system' }, 'namespace'));
spec('refuses serviceAccountName', () => rejects({ name: 'a', serviceAccountName: 'admin' }, 'serviceAccountName'));
spec('refuses hostNetwork and privileged', () => {
  rejects({ name: 'a', hostNetwork: true }, 'hostNetwork');
  rejects({ name: 'a', securityContext: { privileged: true } }, 'securityContext');
});
spec('refuses invalid names', () => {
  rejects({ name: 'List-files' }, 'name');
  rejects({ name: 'a'.repeat(41) }, 'name');
});
spec('refuses bad quantities and env names', () => {
  rejects({ name: 'a', resources: { requests: { cpu: 'lots' } } }, 'resources.requests.cpu');
  rejects({ name: 'a', env: { 'BAD NAME': 'x' } }, 'env.BAD NAME');
  rejects({ name: 'a', resources: { claims: [] } }, 'resources.claims');
});
spec('refuses reserved label keys', () => rejects({ name: 'a', labels: { 'kbatch.jupyter.org/username': 'bob' } }, 'labels.kbatch.jupyter.org/username'));
spec('parallelism needs completions and cannot exceed them', () => {
  rejects({ name: 'a', parallelism: 3 }, 'parallelism');
  rejects({ name: 'a', parallelism: 3, completions: 2 }, 'parallelism');
  assert.is(parseJobSpec({ name: 'a', parallelism: 2, completions: 4 }).parallelism, 2);
});
spec.run();

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
        affinity: { node_affinity: { required_during_scheduling_ignored_during_execution: { node_selector_terms: [{ match_expressions: [{ key: 'a', operator: 'In', values: ['b'] }], match_fields: [] }] }, preferred_during_scheduling_ignored_during_execution: null }, pod_affinity: null },
        containers: [{ name: 'job', image: 'alpine', command: ['sh', '-c'], args: ['python main.py'], env: [{ name: 'A', value: '1', value_from: null }], resources: { limits: { memory: '1G' }, requests: { cpu: '1' } }, working_dir: '/code', volume_mounts: null }],
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
const withPod = (patch: Record<string, unknown>) => ({ ...manifest, spec: { ...manifest.spec, template: { ...manifest.spec.template, spec: { ...manifest.spec.template.spec, ...patch } } } });
upstream('refuses a namespace', () => rejects({ ...manifest, metadata: { ...manifest.metadata, namespace: 'kube-system' } }, 'job.metadata.namespace', specFromUpstreamManifest));
upstream('refuses serviceAccountName', () => rejects(withPod({ service_account_name: 'admin' }), 'job.spec.template.spec.serviceAccountName', specFromUpstreamManifest));
upstream('refuses hostPath volumes', () => rejects(withPod({ volumes: [{ name: 'h', host_path: { path: '/' } }] }), 'job.spec.template.spec.volumes', specFromUpstreamManifest));
upstream('refuses hostNetwork', () => rejects(withPod({ host_network: true }), 'job.spec.template.spec.hostNetwork', specFromUpstreamManifest));
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
  const { specFromUpstreamCronJob } = await import('../../lib/k8s/upstream-manifest.ts');
  const { spec: parsed, schedule } = specFromUpstreamCronJob({
    api_version: 'batch/v1',
    kind: 'CronJob',
    metadata: { generate_name: 'nightly-cron-', labels: {}, annotations: {} },
    spec: { schedule: '0 22 * * 1-5', starting_deadline_seconds: 300, job_template: { metadata: { generate_name: 'nightly-cron-' }, spec: manifest.spec } },
  });
  assert.is(schedule, '0 22 * * 1-5');
  assert.is(parsed.name, 'nightly-cron');
  assert.is(parsed.image, 'alpine');
});
cron('refuses fields outside the allow-list', async () => {
  const { specFromUpstreamCronJob } = await import('../../lib/k8s/upstream-manifest.ts');
  rejects({ kind: 'CronJob', spec: { schedule: '* * * * *', suspend: true, job_template: { spec: manifest.spec } } }, 'job.spec.suspend', specFromUpstreamCronJob);
});
cron.run();

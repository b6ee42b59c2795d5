import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { V1CronJob } from '@kubernetes/client-node';
import { buildManualJob, manualRunAnnotation } from '../../lib/k8s/cronjob-run.ts';

const cronJob: V1CronJob = {
  apiVersion: 'batch/v1',
  kind: 'CronJob',
  metadata: { name: 'nightly-abcde', namespace: 'kbatch-alice', uid: 'u-1' },
  spec: {
    schedule: '0 2 * * *',
    jobTemplate: {
      metadata: { labels: { 'kbatch.jupyter.org/username': 'alice', team: 'ml' }, annotations: { 'kbatch.jupyter.org/username': 'alice' } },
      spec: { backoffLimit: 0, template: { spec: { restartPolicy: 'Never', containers: [{ name: 'job', image: 'busybox' }] } } },
    },
  },
};

const run = suite('a cronjob run now, outside its schedule');
run('is its job template as a Job, owned by the cronjob, marked manual', () => {
  const job = buildManualJob(cronJob, 'xyz12');
  assert.is(job.metadata!.name, 'nightly-abcde-manual-xyz12');
  assert.is(job.metadata!.namespace, 'kbatch-alice');
  assert.equal(job.metadata!.labels, { 'kbatch.jupyter.org/username': 'alice', team: 'ml' });
  assert.is(job.metadata!.annotations![manualRunAnnotation], 'manual');
  assert.equal(job.metadata!.ownerReferences, [
    { apiVersion: 'batch/v1', kind: 'CronJob', name: 'nightly-abcde', uid: 'u-1', controller: true },
  ]);
  assert.is(job.spec, cronJob.spec!.jobTemplate.spec);
});
run('a long cronjob name is cut so the Job name stays a valid label value', () => {
  const long = { ...cronJob, metadata: { ...cronJob.metadata, name: 'x'.repeat(60) } };
  assert.ok(buildManualJob(long, 'xyz12').metadata!.name!.length <= 63);
});
run.run();

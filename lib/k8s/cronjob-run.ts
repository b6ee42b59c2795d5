import type { V1CronJob, V1Job } from '@kubernetes/client-node';
import { ownerReferenceTo } from './builders.ts';
import { randomSuffix } from './names.ts';

/** Marks a Job made by hand from a CronJob, as `kubectl create job --from=cronjob/NAME` does. */
export const manualRunAnnotation = 'cronjob.kubernetes.io/instantiate';

/**
 * A run of a CronJob now, outside its schedule: its job template as a Job, owned by the CronJob (so
 * deleting the CronJob removes it, and the template's env Secret and code, owned by the CronJob too,
 * outlive it). Named `<cronjob>-manual-<suffix>`, within the 63 characters of a label value.
 */
export function buildManualJob(cronJob: V1CronJob, suffix: string = randomSuffix()): V1Job {
  const template = cronJob.spec!.jobTemplate;
  const base = cronJob.metadata!.name!.slice(0, 63 - '-manual-'.length - suffix.length);
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name: `${base}-manual-${suffix}`,
      namespace: cronJob.metadata!.namespace,
      labels: { ...template.metadata?.labels },
      annotations: { ...template.metadata?.annotations, [manualRunAnnotation]: 'manual' },
      ownerReferences: [{ ...ownerReferenceTo(cronJob, 'CronJob'), controller: true }],
    },
    spec: template.spec,
  };
}

import { BadRequest } from '../http/errors.ts';
import { UpstreamCronJobSchema, UpstreamJobSchema, type UpstreamJob } from '../jobs/schemas.ts';
import { checker, fail, withoutAbsent } from '../jobs/validation.ts';
import { expectObject, parseJobSpec, type JobSpec } from '../jobs/spec.ts';
import { camelCaseKeys } from '../k8s/wire.ts';

/**
 * The Python client's `to_dict()` (snake_case, every field present, most null) as Kubernetes JSON
 * without the absent fields, ready for its schema.
 */
function normalized(input: unknown, field: string): Record<string, unknown> {
  return (withoutAbsent(camelCaseKeys(expectObject(input, field)), field) ?? {}) as Record<string, unknown>;
}

const checkJob = checker(UpstreamJobSchema, 'job');
const checkCronJob = checker(UpstreamCronJobSchema, 'job');

/** A native spec from the parts of a Job manifest a kbatch job may hold (the schema has refused the rest). */
function specFromJob(manifest: UpstreamJob, path: string, metadataPath = `${path}.metadata`): JobSpec {
  const { metadata = {}, spec } = manifest;
  const podSpec = spec.template.spec;
  const container = podSpec.containers[0]!;
  const env = new Map<string, string>();
  for (const entry of container.env ?? []) env.set(entry.name, entry.value === undefined ? '' : String(entry.value));
  const labels = { ...metadata.labels, ...spec.template.metadata?.labels };
  const terms = podSpec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
  try {
    return parseJobSpec({
      name: metadata.generateName ?? metadata.name,
      image: container.image,
      command: container.command,
      args: container.args,
      env: Object.fromEntries(env),
      resources: container.resources,
      backoffLimit: spec.backoffLimit,
      ttlSecondsAfterFinished: spec.ttlSecondsAfterFinished,
      parallelism: spec.parallelism,
      completions: spec.completions,
      activeDeadlineSeconds: spec.activeDeadlineSeconds,
      labels,
      tolerations: podSpec.tolerations,
      nodeAffinityRequired: terms,
    });
  } catch (error) {
    // Name the field where the manifest holds it, not where the native spec does.
    const field = (error as { field?: string }).field;
    const where = field && manifestPath(field, path, metadataPath);
    if (where) fail(where, (error as Error).message.slice(field.length + 2));
    throw error;
  }
}

function manifestPath(field: string, path: string, metadataPath: string): string | undefined {
  const pod = `${path}.spec.template.spec`;
  const container = `${pod}.containers[0]`;
  const places: [string, string][] = [
    ['name', `${metadataPath}.generateName`],
    ['image', `${container}.image`],
    ['command', `${container}.command`],
    ['args', `${container}.args`],
    ['env', `${container}.env`],
    ['resources', `${container}.resources`],
    ['labels', `${metadataPath}.labels`],
    ['tolerations', `${pod}.tolerations`],
    ['nodeAffinityRequired', `${pod}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms`],
    ['backoffLimit', `${path}.spec.backoffLimit`],
    ['ttlSecondsAfterFinished', `${path}.spec.ttlSecondsAfterFinished`],
    ['parallelism', `${path}.spec.parallelism`],
    ['completions', `${path}.spec.completions`],
    ['activeDeadlineSeconds', `${path}.spec.activeDeadlineSeconds`],
  ];
  for (const [native, manifest] of places) {
    if (field === native || field.startsWith(`${native}.`) || field.startsWith(`${native}[`)) return manifest + field.slice(native.length);
  }
  return undefined;
}

/**
 * A 400 about the native spec read from a manifest (e.g. the job policy, checked when the Job is
 * built) restated with the manifest's field path, so the upstream CLI user sees where it is in
 * their job. Anything else is returned unchanged.
 */
export function inManifestTerms(error: unknown, kind: 'job' | 'cronjob'): unknown {
  const field = (error as { field?: unknown }).field;
  if (!(error instanceof BadRequest) || typeof field !== 'string') return error;
  const where = kind === 'job' ? manifestPath(field, 'job', 'job.metadata') : manifestPath(field, 'job.spec.jobTemplate', 'job.metadata');
  return where ? new BadRequest(`${where}: ${error.message.slice(field.length + 2)}`, where) : error;
}

/**
 * Reads the full Job manifest that the upstream Python CLI builds client-side into the same
 * allow-listed spec the native API takes. Anything a user could use to leave their sandbox
 * (namespace, serviceAccountName, hostPath, privileged, hostNetwork) is simply not in the schema.
 */
export function specFromUpstreamManifest(input: unknown): JobSpec {
  return specFromJob(checkJob(normalized(input, 'job')), 'job');
}

/** The upstream CLI's CronJob: its `jobTemplate` is read exactly like a one-off Job. */
export function specFromUpstreamCronJob(input: unknown): { spec: JobSpec; schedule: string } {
  const cronJob = checkCronJob(normalized(input, 'job'));
  const template = cronJob.spec.jobTemplate;
  const spec = specFromJob({ metadata: cronJob.metadata, spec: template.spec }, 'job.spec.jobTemplate', 'job.metadata');
  return { spec, schedule: cronJob.spec.schedule };
}

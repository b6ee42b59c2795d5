import { BadRequest } from '../http/errors.ts';
import { expectObject, parseJobSpec, type JobSpec } from './spec.ts';
import { camelCaseKeys } from './wire.ts';

type Json = Record<string, unknown>;

function present(value: unknown): boolean {
  if (value === null || value === undefined) return false;
  if (Array.isArray(value)) return value.length > 0;
  if (typeof value === 'object') return Object.keys(value).length > 0;
  return true;
}

/** Fails on the first non-empty field outside `allowed`, naming its full path. */
function onlyAllowed(object: Json, allowed: string[], path: string): void {
  for (const [key, value] of Object.entries(object)) {
    if (!allowed.includes(key) && present(value)) {
      throw new BadRequest(`${path}.${key}: is not allowed in a kbatch job (allowed here: ${allowed.join(', ')})`, `${path}.${key}`);
    }
  }
}

function optionalObject(value: unknown, path: string): Json {
  return present(value) ? expectObject(value, path) : {};
}

/**
 * Reads the full Job manifest that the upstream Python CLI builds client-side (snake_case, every
 * field present, most null) into the same allow-listed spec the native API takes. Anything a user
 * could use to leave their sandbox (namespace, serviceAccountName, hostPath, privileged, hostNetwork)
 * is simply not on the list.
 */
export function specFromUpstreamManifest(input: unknown): JobSpec {
  const manifest = camelCaseKeys(expectObject(input, 'job')) as Json;
  onlyAllowed(manifest, ['apiVersion', 'kind', 'metadata', 'spec', 'status'], 'job');
  if (present(manifest.kind) && manifest.kind !== 'Job') throw new BadRequest('job.kind: must be Job', 'job.kind');
  const metadata = optionalObject(manifest.metadata, 'job.metadata');
  onlyAllowed(metadata, ['name', 'generateName', 'labels', 'annotations'], 'job.metadata');
  const spec = optionalObject(manifest.spec, 'job.spec');
  onlyAllowed(spec, ['backoffLimit', 'ttlSecondsAfterFinished', 'parallelism', 'completions', 'activeDeadlineSeconds', 'template', 'completionMode'], 'job.spec');
  const template = optionalObject(spec.template, 'job.spec.template');
  onlyAllowed(template, ['metadata', 'spec'], 'job.spec.template');
  const templateMetadata = optionalObject(template.metadata, 'job.spec.template.metadata');
  onlyAllowed(templateMetadata, ['name', 'labels', 'annotations'], 'job.spec.template.metadata');
  const podSpec = optionalObject(template.spec, 'job.spec.template.spec');
  onlyAllowed(podSpec, ['restartPolicy', 'containers', 'tolerations', 'affinity'], 'job.spec.template.spec');
  if (present(podSpec.restartPolicy) && !['Never', 'OnFailure'].includes(String(podSpec.restartPolicy))) {
    throw new BadRequest('job.spec.template.spec.restartPolicy: must be Never or OnFailure', 'job.spec.template.spec.restartPolicy');
  }
  const containers = podSpec.containers;
  if (!Array.isArray(containers) || containers.length !== 1) {
    throw new BadRequest('job.spec.template.spec.containers: exactly one container is supported', 'job.spec.template.spec.containers');
  }
  const container = expectObject(containers[0], 'job.spec.template.spec.containers[0]');
  const containerPath = 'job.spec.template.spec.containers[0]';
  onlyAllowed(container, ['name', 'image', 'command', 'args', 'env', 'workingDir', 'resources'], containerPath);
  if (present(container.workingDir) && container.workingDir !== '/code') {
    throw new BadRequest(`${containerPath}.workingDir: must be /code`, `${containerPath}.workingDir`);
  }
  const env: Record<string, string> = {};
  if (present(container.env)) {
    if (!Array.isArray(container.env)) throw new BadRequest(`${containerPath}.env: must be a list`, `${containerPath}.env`);
    container.env.forEach((item, i) => {
      const entry = expectObject(item, `${containerPath}.env[${i}]`);
      onlyAllowed(entry, ['name', 'value'], `${containerPath}.env[${i}]`);
      if (typeof entry.name !== 'string') throw new BadRequest(`${containerPath}.env[${i}].name: must be a string`, `${containerPath}.env[${i}].name`);
      env[entry.name] = entry.value === null || entry.value === undefined ? '' : String(entry.value);
    });
  }
  const affinity = optionalObject(podSpec.affinity, 'job.spec.template.spec.affinity');
  onlyAllowed(affinity, ['nodeAffinity'], 'job.spec.template.spec.affinity');
  const nodeAffinity = optionalObject(affinity.nodeAffinity, 'job.spec.template.spec.affinity.nodeAffinity');
  onlyAllowed(nodeAffinity, ['requiredDuringSchedulingIgnoredDuringExecution'], 'job.spec.template.spec.affinity.nodeAffinity');
  const required = optionalObject(nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution, 'job.spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution');

  const userLabels = { ...(metadata.labels as Json | undefined), ...(templateMetadata.labels as Json | undefined) };
  const name = (present(metadata.generateName) ? metadata.generateName : metadata.name) as unknown;
  // The Python client's V1ResourceRequirements.to_dict() also carries `claims: null`.
  const resources = optionalObject(container.resources, `${containerPath}.resources`);
  onlyAllowed(resources, ['requests', 'limits'], `${containerPath}.resources`);
  return parseJobSpec({
    name,
    image: container.image,
    command: container.command,
    args: container.args,
    env: Object.keys(env).length ? env : undefined,
    resources: present(resources.requests) || present(resources.limits) ? { requests: resources.requests, limits: resources.limits } : undefined,
    backoffLimit: spec.backoffLimit,
    parallelism: spec.parallelism,
    completions: spec.completions,
    activeDeadlineSeconds: spec.activeDeadlineSeconds,
    labels: Object.keys(userLabels).length ? userLabels : undefined,
    tolerations: present(podSpec.tolerations) ? podSpec.tolerations : undefined,
    nodeAffinityRequired: present(required.nodeSelectorTerms) ? required.nodeSelectorTerms : undefined,
  });
}

/** The upstream CLI's CronJob: its `jobTemplate` is read exactly like a one-off Job. */
export function specFromUpstreamCronJob(input: unknown): { spec: JobSpec; schedule: string } {
  const manifest = camelCaseKeys(expectObject(input, 'job')) as Json;
  onlyAllowed(manifest, ['apiVersion', 'kind', 'metadata', 'spec', 'status'], 'job');
  if (present(manifest.kind) && manifest.kind !== 'CronJob') throw new BadRequest('job.kind: must be CronJob', 'job.kind');
  const spec = optionalObject(manifest.spec, 'job.spec');
  onlyAllowed(spec, ['schedule', 'startingDeadlineSeconds', 'jobTemplate'], 'job.spec');
  if (typeof spec.schedule !== 'string' || !spec.schedule.trim()) throw new BadRequest('job.spec.schedule: is required', 'job.spec.schedule');
  const template = optionalObject(spec.jobTemplate, 'job.spec.jobTemplate');
  onlyAllowed(template, ['metadata', 'spec'], 'job.spec.jobTemplate');
  const jobSpec = specFromUpstreamManifest({ kind: 'Job', metadata: manifest.metadata, spec: template.spec });
  return { spec: jobSpec, schedule: spec.schedule };
}

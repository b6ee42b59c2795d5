import { createHash } from 'node:crypto';
import type { User } from '../auth/types.ts';
import type {
  V1ConfigMap,
  V1Container,
  V1CronJob,
  V1EnvVar,
  V1Job,
  V1LimitRange,
  V1Namespace,
  V1PersistentVolumeClaim,
  V1ResourceQuota,
  V1Secret,
  V1Volume,
  V1VolumeMount,
} from '@kubernetes/client-node';
import { BadRequest } from '../http/errors.ts';
import { checkResourceMaximums, checkResourceShape, checkScheduling, jobPolicyOf, type JobPolicy } from '../jobs/policy.ts';
import type { StoredCode } from '../uploads/reference.ts';
import { allProfiles, mergeTemplate, profileNamed, profileNames, type Profile, type Profiles } from '../jobs/admin-config.ts';
import { annotations, labels, suffixFromBytes, userLabelValue } from './names.ts';
import type { JobSpec } from '../jobs/spec.ts';
import { notebookAnnotation, notebookCommand, notebookEnv, recognisedPapermill } from '../jobs/notebook.ts';

export interface JobSettings extends Partial<JobPolicy> {
  jobTtlSeconds: number | null;
  jobExtraEnv: Record<string, string>;
  helperImage: string;
}

/** Whose objects these are: the exact Hub name (annotations) and the namespace resolved from it. */
export type Owner = Pick<User, 'name' | 'namespace'>;

export interface SubmitUser extends Owner {
  token?: string;
}

export interface JobObjects {
  namespace: string;
  job: V1Job;
  /** Holds every env value, so tokens never sit in the Job spec where `job show` would print them. */
  secret: V1Secret;
}

export const codeMountPath = '/code';
export const codeArchiveKey = 'code.tgz';

/** The user's namespace; its `username` annotation is the owner record kbatch checks before acting there. */
export function buildNamespace(owner: Owner): V1Namespace {
  return {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: {
      name: owner.namespace,
      labels: ownerLabels(owner),
      annotations: { [annotations.username]: owner.name },
    },
  };
}

export interface NamespacePolicySettings {
  namespaceQuota?: Record<string, string>;
  namespaceLimitRange?: Partial<Record<'default' | 'defaultRequest' | 'max' | 'min', Record<string, string>>>;
}

/**
 * The admin's ResourceQuota and LimitRange for a user namespace (KBATCH_NAMESPACE_QUOTA and
 * KBATCH_NAMESPACE_LIMIT_RANGE), created with it; none when unset. Kubernetes enforces them on
 * every pod, so together with the per-job maximums a user cannot take the cluster with many jobs.
 */
export function buildNamespacePolicy(
  namespace: string,
  settings: NamespacePolicySettings,
): { quota?: V1ResourceQuota; limitRange?: V1LimitRange } {
  const metadata = () => ({ name: 'kbatch', namespace, labels: { [labels.managedBy]: 'kbatch' } });
  const hard = settings.namespaceQuota;
  const range = settings.namespaceLimitRange;
  return {
    ...(hard && Object.keys(hard).length
      ? { quota: { apiVersion: 'v1', kind: 'ResourceQuota', metadata: metadata(), spec: { hard: { ...hard } } } }
      : {}),
    ...(range && Object.keys(range).length
      ? {
          limitRange: {
            apiVersion: 'v1',
            kind: 'LimitRange',
            metadata: metadata(),
            spec: { limits: [{ type: 'Container', ...structuredClone(range) }] },
          },
        }
      : {}),
  };
}

/**
 * Uploads nobody used before their reference expired: nothing owns them, so nothing else would
 * ever delete them. Pure, so the rule is unit-tested; the backend lists and deletes.
 */
export function isAbandonedUpload(configMap: V1ConfigMap, now: Date): boolean {
  const expires = configMap.metadata?.annotations?.[annotations.uploadExpires];
  if (!expires || configMap.metadata?.ownerReferences?.length) return false;
  return Date.parse(expires) < now.getTime();
}

export function ownerLabels(owner: Owner): Record<string, string> {
  return { [labels.managedBy]: 'kbatch', [labels.username]: userLabelValue(owner.namespace) };
}

export function resolveProfile(spec: JobSpec, profiles: Profiles): Profile | undefined {
  if (spec.profile === undefined) return undefined;
  const profile = profileNamed(profiles, spec.profile);
  if (!profile) {
    const known = profileNames(profiles);
    throw new BadRequest(
      `profile: unknown profile "${spec.profile}"${known.length ? ` (available: ${known.join(', ')})` : ' (the server defines no profiles)'}`,
      'profile',
    );
  }
  return profile;
}

/**
 * Everything about a spec that depends on the admin's configuration (profile, image, job policy),
 * with no side effect: a submit can call it before storing any code, and buildJobObjects calls it again.
 */
export function checkSubmission(
  spec: JobSpec,
  options: { settings: JobSettings; profiles: Profiles },
): { profile: Profile | undefined; image: string } {
  const profile = resolveProfile(spec, options.profiles);
  checkJobPolicy(spec, profile, options.profiles, jobPolicyOf(options.settings));
  const image = spec.image ?? profile?.image;
  if (!image) throw new BadRequest('image: is required (give --image or choose a profile that sets one)', 'image');
  return { profile, image };
}

/**
 * The admin's job policy (lib/jobs/policy.ts) on what the user asked for: resources within the
 * maximums, limits at least requests once the profile's are added, scheduling only as permitted.
 */
export function checkJobPolicy(spec: JobSpec, profile: Profile | undefined, profiles: Profiles, policy: JobPolicy): void {
  const granted = allProfiles(profiles);
  checkScheduling(spec, policy, {
    tolerations: granted.flatMap((p) => p.tolerations ?? []),
    terms: granted.flatMap((p) => p.nodeAffinityRequired ?? []),
  });
  checkResourceMaximums(spec.resources, policy);
  if (profile?.resources) {
    checkResourceShape({
      requests: { ...profile.resources.requests, ...spec.resources?.requests },
      limits: { ...profile.resources.limits, ...spec.resources?.limits },
    });
  }
}

/** Volumes, an unpacking init container and the /code mount for an upload, or a scratch /code without one. */
export function codeVolumesFor(
  code: StoredCode | undefined,
  helperImage: string,
): { volumes: V1Volume[]; initContainers: V1Container[]; mount: V1VolumeMount } {
  const mount: V1VolumeMount = { name: 'code', mountPath: codeMountPath };
  const scratch: V1Volume = { name: 'code', emptyDir: {} };
  if (!code || code.kind === 'local') return { volumes: [scratch], initContainers: [], mount };
  if (code.kind === 'configmap') {
    return {
      volumes: [scratch, { name: 'code-archive', configMap: { name: code.name, items: [{ key: codeArchiveKey, path: codeArchiveKey }] } }],
      initContainers: [
        {
          name: 'unpack-code',
          image: helperImage,
          command: ['tar', '-xzf', `/code-archive/${codeArchiveKey}`, '-C', codeMountPath],
          volumeMounts: [mount, { name: 'code-archive', mountPath: '/code-archive', readOnly: true }],
        },
      ],
      mount,
    };
  }
  // Each job copies the upload so it can write in /code without touching other jobs' input.
  return {
    volumes: [scratch, { name: 'uploads', persistentVolumeClaim: { claimName: code.claim, readOnly: true } }],
    initContainers: [
      {
        name: 'copy-code',
        image: helperImage,
        // Uploads are renamed into place only when complete (streamed-upload.ts); one stored by an
        // older writer Job may still be on its way, so wait for it.
        command: [
          'sh',
          '-c',
          [
            `for i in $(seq 600); do [ -d "/uploads/${code.path}" ] && break; sleep 1; done`,
            `cp -a "/uploads/${code.path}/." ${codeMountPath}/`,
          ].join('; '),
        ],
        volumeMounts: [mount, { name: 'uploads', mountPath: '/uploads', readOnly: true }],
      },
    ],
    mount,
  };
}

export const outputsMountPath = '/outputs';

/**
 * The job's outputs: the user's volume at `outputs/<job name>` (subPathExpr, expanded by the
 * kubelet from the pod's job-name label, so a CronJob's runs each get their own), mounted at
 * /outputs and named by KBATCH_OUTPUTS_DIR. The indexes of an array job share it, so each writes
 * under a name of its own (notebook runs do: lib/jobs/notebook.ts). Plain env, not the Secret:
 * nothing secret, and set after the user's env so it always wins.
 */
export function outputsVolumeFor(): { volume: V1Volume; mount: V1VolumeMount; env: V1EnvVar[] } {
  return {
    volume: { name: 'outputs', persistentVolumeClaim: { claimName: 'kbatch-uploads' } },
    mount: { name: 'outputs', mountPath: outputsMountPath, subPathExpr: 'outputs/$(KBATCH_JOB_NAME)' },
    env: [
      { name: 'KBATCH_JOB_NAME', valueFrom: { fieldRef: { fieldPath: `metadata.labels['${labels.jobName}']` } } },
      { name: 'KBATCH_OUTPUTS_DIR', value: outputsMountPath },
    ],
  };
}

function envFromSecret(name: string, secretName: string): V1EnvVar {
  return { name, valueFrom: { secretKeyRef: { name: secretName, key: name } } };
}

/**
 * The Job, its env Secret and namespace for one submission. Pure: the job name (with its random
 * suffix) is chosen by the caller so the Secret can be named after the Job before either exists.
 */
export function buildJobObjects(
  spec: JobSpec,
  user: SubmitUser,
  jobName: string,
  options: {
    settings: JobSettings;
    profiles: Profiles;
    template?: Record<string, unknown>;
    code?: StoredCode;
    now?: Date;
    idempotency?: Idempotency;
  },
): JobObjects {
  const { settings } = options;
  const { profile, image } = checkSubmission(spec, options);
  const { namespace } = user;
  const common = { ...(spec.labels ?? {}), ...ownerLabels(user) };
  const userAnnotations: Record<string, string> = {
    [annotations.username]: user.name,
    [annotations.submittedAt]: (options.now ?? new Date()).toISOString(),
  };
  if (spec.profile) userAnnotations[annotations.profile] = spec.profile;

  const envValues: Record<string, string> = {
    ...(spec.env ?? {}),
    ...settings.jobExtraEnv,
    ...(spec.notebook ? notebookEnv({ notebook: spec.notebook, parameters: spec.parameters, sweep: spec.sweep }) : {}),
    JUPYTER_IMAGE: image,
    JUPYTER_IMAGE_SPEC: image,
  };
  if (user.token) envValues.JUPYTERHUB_API_TOKEN = user.token;
  const code = codeVolumesFor(options.code, settings.helperImage);
  const outputs = outputsVolumeFor();

  const resources = {
    requests: { ...(profile?.resources?.requests ?? {}), ...(spec.resources?.requests ?? {}) },
    limits: { ...(profile?.resources?.limits ?? {}), ...(spec.resources?.limits ?? {}) },
  };
  const container: V1Container = {
    name: 'job',
    image,
    workingDir: codeMountPath,
    env: [...Object.keys(envValues).map((name) => envFromSecret(name, jobName)), ...outputs.env],
    volumeMounts: [code.mount, outputs.mount],
  };
  if (spec.command) container.command = spec.command;
  if (spec.args) container.args = spec.args;
  if (spec.notebook) container.command = notebookCommand();
  const notebookRun = spec.notebook
    ? notebookAnnotation({
        notebook: spec.notebook,
        ...(spec.parameters ? { parameters: spec.parameters } : {}),
        ...(spec.sweep ? { sweep: spec.sweep } : {}),
      })
    : recognisedPapermill([...(spec.command ?? []), ...(spec.args ?? [])]);
  if (Object.keys(resources.requests).length || Object.keys(resources.limits).length) container.resources = resources;

  const tolerations = [...(profile?.tolerations ?? []), ...(spec.tolerations ?? [])];
  const terms = [...(profile?.nodeAffinityRequired ?? []), ...(spec.nodeAffinityRequired ?? [])];
  const completions = spec.completions ?? 1;
  const ttl =
    spec.ttlSecondsAfterFinished !== undefined && settings.jobTtlSeconds !== null
      ? Math.min(spec.ttlSecondsAfterFinished, settings.jobTtlSeconds)
      : (spec.ttlSecondsAfterFinished ?? settings.jobTtlSeconds);

  let job: V1Job = {
    apiVersion: 'batch/v1',
    kind: 'Job',
    // The notebook annotation is on the Job only: its pods need not carry the parameters of every index.
    metadata: {
      name: jobName,
      namespace,
      labels: { ...common },
      annotations: { ...userAnnotations, ...(notebookRun ? { [annotations.notebook]: notebookRun } : {}) },
    },
    spec: {
      backoffLimit: spec.backoffLimit ?? 0,
      completions,
      parallelism: Math.min(spec.parallelism ?? completions, completions),
      ...(completions > 1 ? { completionMode: 'Indexed' } : {}),
      ...(ttl !== null && ttl !== undefined ? { ttlSecondsAfterFinished: ttl } : {}),
      ...(spec.activeDeadlineSeconds ? { activeDeadlineSeconds: spec.activeDeadlineSeconds } : {}),
      template: {
        metadata: { labels: { ...common }, annotations: { ...userAnnotations } },
        spec: {
          restartPolicy: 'Never',
          // Jobs need no Kubernetes API access; the namespace's default account gets no token.
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          // The /outputs directory is made by the kubelet (subPathExpr) as root with the volume's
          // group and mode; group 1000 (the volume helper's too) lets a non-root image write there.
          // OnRootMismatch: the volume is re-owned once, not walked at every pod start.
          securityContext: { fsGroup: 1000, fsGroupChangePolicy: 'OnRootMismatch' },
          containers: [container],
          initContainers: code.initContainers.length ? code.initContainers : undefined,
          volumes: [...code.volumes, outputs.volume],
          tolerations: tolerations.length ? tolerations : undefined,
          affinity: terms.length
            ? { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms } } }
            : undefined,
        },
      },
    },
  };
  if (options.template) job = mergeTemplate(job, options.template) as V1Job;
  // The template may add, never override, what isolation depends on.
  job.metadata = { ...job.metadata, name: jobName, namespace, labels: { ...job.metadata?.labels, ...common } };
  if (options.idempotency) {
    // On the Job only (not its pods): it is how a retry recognises the first attempt's Job.
    job.metadata.labels![labels.idempotencyKey] = options.idempotency.label;
    job.metadata.annotations = { ...job.metadata.annotations, [annotations.requestSha256]: options.idempotency.requestSha256 };
  }
  const podSpec = job.spec!.template.spec!;
  podSpec.serviceAccountName = undefined;
  podSpec.hostNetwork = undefined;
  podSpec.hostPID = undefined;
  podSpec.hostIPC = undefined;
  job = JSON.parse(JSON.stringify(job)) as V1Job;

  const secret: V1Secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    metadata: { name: jobName, namespace, labels: { ...common }, annotations: { [annotations.username]: user.name } },
    data: Object.fromEntries(Object.entries(envValues).map(([k, v]) => [k, Buffer.from(v, 'utf8').toString('base64')])),
  };
  return { namespace, job, secret };
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
}

export function ownerReferenceTo(owner: V1Job | V1CronJob, kind: 'Job' | 'CronJob' = 'Job'): OwnerReference {
  return { apiVersion: 'batch/v1', kind, name: owner.metadata!.name!, uid: owner.metadata!.uid! };
}

/**
 * A copy of `object` owned by `owner` from the moment it exists: the reference goes into the create
 * call itself, so no interruption can leave the object (an env Secret holds the user's Hub token)
 * without an owner for the garbage collector to follow.
 */
export function ownedBy<T extends { metadata?: { ownerReferences?: OwnerReference[] } }>(object: T, owner: OwnerReference): T {
  return { ...object, metadata: { ...object.metadata, ownerReferences: [owner] } };
}

/** What a submit with an `Idempotency-Key` records on its Job (or CronJob). */
export interface Idempotency {
  /** Label value: a hash of (user, key), so neither appears in clear and keys of different users never meet. */
  label: string;
  /** Hash of the request, so a key reused for a different request is refused rather than answered with the wrong job. */
  requestSha256: string;
  /** Job name suffix derived from the key: the retry's create collides with the first attempt's (409) instead of making a second Job. */
  nameSuffix: string;
}

export function idempotencyFor(username: string, key: string, request: unknown): Idempotency {
  const digest = createHash('sha256').update(username, 'utf8').update('\0').update(key, 'utf8').digest();
  return {
    label: digest.toString('hex').slice(0, 48),
    requestSha256: createHash('sha256').update(JSON.stringify(request)).digest('hex'),
    nameSuffix: suffixFromBytes(digest.subarray(24, 29)),
  };
}

/** Cron expressions (five fields) or the @-macros the CronJob controller understands. */
const schedulePattern = /^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$/;

export interface CronJobObjects {
  namespace: string;
  cronJob: V1CronJob;
  secret: V1Secret;
}

/**
 * A CronJob whose job template is exactly the Job a one-off submit would build; its env Secret and
 * code are shared by every run and owned by the CronJob.
 */
export function buildCronJobObjects(
  spec: JobSpec,
  schedule: string,
  user: SubmitUser,
  name: string,
  options: Parameters<typeof buildJobObjects>[3],
): CronJobObjects {
  if (!schedulePattern.test(schedule.trim()))
    throw new BadRequest(
      `schedule: "${schedule}" is not a cron expression (five fields, e.g. "0 22 * * 1-5") or @hourly/@daily/...`,
      'schedule',
    );
  const { namespace, job, secret } = buildJobObjects(spec, user, name, options);
  // The idempotency marks identify the CronJob a submit made, not the Jobs it will start.
  const { [labels.idempotencyKey]: _key, ...runLabels } = job.metadata!.labels ?? {};
  const { [annotations.requestSha256]: _request, ...runAnnotations } = job.metadata!.annotations ?? {};
  const cronJob: V1CronJob = {
    apiVersion: 'batch/v1',
    kind: 'CronJob',
    metadata: { name, namespace, labels: job.metadata!.labels, annotations: job.metadata!.annotations },
    spec: {
      schedule: schedule.trim(),
      // A run missed by more than five minutes (controller down) is skipped rather than started late.
      startingDeadlineSeconds: 300,
      concurrencyPolicy: 'Forbid',
      successfulJobsHistoryLimit: 3,
      failedJobsHistoryLimit: 3,
      jobTemplate: { metadata: { labels: runLabels, annotations: runAnnotations }, spec: job.spec! },
    },
  };
  return { namespace, cronJob, secret };
}

/**
 * Uploaded code in a ConfigMap. With an owner reference (code sent with a submit) the garbage
 * collector removes it with its owner; without one (POST /uploads) it is labelled unclaimed and
 * carries its expiry, so the sweep lists only these.
 */
export function buildCodeConfigMap(
  owner: Owner,
  name: string,
  archive: Buffer,
  meta: { sha256: string; files: number; expiresAt?: Date; ownerRef?: OwnerReference },
): V1ConfigMap {
  const configMap: V1ConfigMap = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name,
      namespace: owner.namespace,
      labels: { ...ownerLabels(owner), [labels.upload]: meta.sha256.slice(0, 16) },
      annotations: { [annotations.username]: owner.name, 'kbatch.jupyter.org/files': String(meta.files) },
    },
    binaryData: { [codeArchiveKey]: archive.toString('base64') },
    immutable: true,
  };
  if (meta.ownerRef) return ownedBy(configMap, meta.ownerRef);
  configMap.metadata!.labels![labels.unclaimedUpload] = 'true';
  if (meta.expiresAt) configMap.metadata!.annotations![annotations.uploadExpires] = meta.expiresAt.toISOString();
  return configMap;
}

export function buildUploadsClaim(
  owner: Owner,
  settings: { uploadPvcSize: string; uploadPvcStorageClass?: string; uploadPvcAccessMode: string },
): V1PersistentVolumeClaim {
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name: 'kbatch-uploads', namespace: owner.namespace, labels: ownerLabels(owner) },
    spec: {
      accessModes: [settings.uploadPvcAccessMode],
      resources: { requests: { storage: settings.uploadPvcSize } },
      ...(settings.uploadPvcStorageClass ? { storageClassName: settings.uploadPvcStorageClass } : {}),
    },
  };
}

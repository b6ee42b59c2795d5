import type { IncomingHttpHeaders } from 'node:http';
import type { V1CronJob, V1Job } from '@kubernetes/client-node';
import type { User } from '../auth/types.ts';
import type { CreateOptions } from '../backend/types.ts';
import { idempotencyKeyHeader } from '../contract.ts';
import { BadRequest, HttpError, toHttpError } from '../http/errors.ts';
import { buildCronJobObjects, buildJobObjects, idempotencyFor, type Idempotency } from '../k8s/builders.ts';
import { annotations, jobNameFor, labels } from '../k8s/names.ts';
import type { JobSpec } from '../jobs/spec.ts';
import type { NormalizedUpload, UploadLimits } from '../uploads/archive.ts';
import { signUploadReference, verifyUploadReference, type StoredCode } from '../uploads/reference.ts';
import { jobDetail, newestFirst, submittedAt, type JobDetail } from '../jobs/views.ts';
import type { Deps } from './deps.ts';
import { ensureOwnNamespace } from './namespace.ts';
import { uploadBytes } from '../observability/metrics.ts';

/** The steps shared by the native API, the upstream-compatible API and every function target. */

/** The limits every upload is checked against. */
export function uploadLimitsOf(deps: Deps): UploadLimits {
  return { maxBytes: deps.settings.maxUploadBytes, maxFiles: deps.settings.maxUploadFiles };
}

/** Stored code and what an answer reports of it. */
export interface StoredCodeSummary {
  code: StoredCode;
  files: number;
  bytes: number;
  archiveBytes: number;
  sha256: string;
}

/**
 * Stores normalised code: held in memory, through `storeCode` (a ConfigMap when it fits); too large
 * to hold, streamed into the backend's storage with bounded memory, checked again on the way.
 */
export async function storeNormalized(
  deps: Deps,
  user: User,
  upload: NormalizedUpload,
  expiresAt: Date,
  id?: string,
): Promise<StoredCodeSummary> {
  const { backend, settings } = deps;
  if (upload.kind === 'archive') {
    const code = await backend.storeCode(user, upload, expiresAt, id);
    return { code, files: upload.files, bytes: upload.bytes, archiveBytes: upload.archive.length, sha256: upload.sha256 };
  }
  const source = upload.open();
  try {
    const { code, summary } = await backend.storeCodeStream(user, source, {
      gzip: upload.gzip,
      limits: uploadLimitsOf(deps),
      uploadTtlSeconds: settings.uploadTtlSeconds,
      id,
    });
    // Code held in memory is counted by its route; streamed code only here, once its size is known.
    uploadBytes.inc(summary.archiveBytes);
    return { code, ...summary };
  } finally {
    // A refused store leaves its source half read: close the spooled files under it.
    source.destroy();
  }
}

/** POST /uploads: stores the code on its own, for later submits to reference. */
export async function storeUpload(deps: Deps, user: User, upload: NormalizedUpload) {
  const { settings } = deps;
  await ensureOwnNamespace(deps, user);
  const expiresAt = new Date(Date.now() + settings.uploadTtlSeconds * 1000);
  const stored = await storeNormalized(deps, user, upload, expiresAt);
  const reference = await signUploadReference(
    { user: user.name, code: stored.code, bytes: stored.bytes, files: stored.files, sha256: stored.sha256 },
    settings.uploadSecret,
    settings.uploadTtlSeconds,
  );
  return { reference, stored, expiresAt };
}

/** The 201 answer of a stored upload (multipart, or a bare archive). */
export function storedUploadReply({ reference, stored, expiresAt }: Awaited<ReturnType<typeof storeUpload>>) {
  return {
    status: 201,
    json: {
      upload: reference,
      files: stored.files,
      bytes: stored.bytes,
      archiveBytes: stored.archiveBytes,
      sha256: stored.sha256,
      storage: stored.code.kind,
      expiresAt: expiresAt.toISOString(),
    },
  };
}

/** Idempotency keys are opaque to the server; bounded so a label hash and a log line stay cheap. */
const idempotencyKeyPattern = /^[\x21-\x7e]{1,255}$/;

/** The `Idempotency-Key` header of a submit: absent, or 1-255 visible ASCII characters (400 otherwise). */
export function idempotencyKeyFrom(headers: IncomingHttpHeaders): string | undefined {
  const raw = headers[idempotencyKeyHeader];
  if (raw === undefined) return undefined;
  const key = Array.isArray(raw) ? raw.join(',') : raw;
  if (!idempotencyKeyPattern.test(key))
    throw new BadRequest('Idempotency-Key: must be 1 to 255 visible ASCII characters (no spaces), e.g. a UUID', 'Idempotency-Key');
  return key;
}

export interface SubmitOptions {
  /** Code sent with the submit itself (multipart files, upstream's inline zip): checked, not stored yet. */
  upload?: NormalizedUpload;
  /** From `idempotencyKeyFrom`: a retry with the same key returns the first attempt's job. */
  idempotencyKey?: string;
}

export async function submitJob(deps: Deps, user: User, spec: JobSpec, options: SubmitOptions = {}): Promise<V1Job> {
  return submit(
    deps,
    user,
    spec,
    options,
    {},
    {
      build: (name, code, idempotency) => buildJobObjects(spec, user, name, jobOptions(deps, code, idempotency)),
      create: (objects, code, createOptions) => deps.backend.createJob(objects, code, createOptions),
      existing: (objects) => deps.backend.getJob(objects.namespace, objects.job.metadata!.name!),
    },
  );
}

export async function submitCronJob(
  deps: Deps,
  user: User,
  spec: JobSpec,
  schedule: string,
  options: SubmitOptions = {},
): Promise<V1CronJob> {
  return submit(
    deps,
    user,
    spec,
    options,
    { schedule },
    {
      build: (name, code, idempotency) => buildCronJobObjects(spec, schedule, user, name, jobOptions(deps, code, idempotency)),
      create: (objects, code, createOptions) => deps.backend.createCronJob(objects, code, createOptions),
      existing: (objects) => deps.backend.getCronJob(objects.namespace, objects.cronJob.metadata!.name!),
    },
  );
}

function jobOptions(deps: Deps, code: StoredCode | undefined, idempotency: Idempotency | undefined) {
  return { settings: deps.settings, profiles: deps.admin.profiles, template: deps.admin.jobTemplate, code, idempotency };
}

interface SubmitSteps<O extends { namespace: string }, T extends V1Job | V1CronJob> {
  /** Pure: every check of the request (profile, image, resources, template, schedule) happens here. */
  build: (name: string, code: StoredCode | undefined, idempotency: Idempotency | undefined) => O;
  create: (objects: O, code: StoredCode | undefined, options: CreateOptions) => Promise<T>;
  existing: (objects: O) => Promise<T>;
}

/**
 * Everything that can refuse the request (upload reference, spec, profile, image, template merge)
 * runs before anything is stored or created; the namespace is ensured once; then the backend
 * creates the owner first and the Secret and code owned by it (see KubernetesBackend.createJob).
 */
async function submit<O extends { namespace: string }, T extends V1Job | V1CronJob>(
  deps: Deps,
  user: User,
  spec: JobSpec,
  options: SubmitOptions,
  extra: { schedule?: string },
  steps: SubmitSteps<O, T>,
): Promise<T> {
  const { settings, backend } = deps;
  const { upload, idempotencyKey } = options;
  let code: StoredCode | undefined;
  let codeSha256 = upload?.sha256;
  if (spec.upload) {
    if (upload) throw new BadRequest('upload: send either files or an upload reference, not both', 'upload');
    const claims = await verifyUploadReference(spec.upload, user.name, settings.uploadSecret);
    code = claims.code;
    codeSha256 = claims.sha256;
  }
  const idempotency =
    idempotencyKey === undefined ? undefined : idempotencyFor(user.name, idempotencyKey, { spec, ...extra, code: codeSha256 ?? null });
  const name = jobNameFor(spec.name, idempotency?.nameSuffix);
  const placed = upload && backend.placeCode ? backend.placeCode(user, upload, name) : undefined;
  let objects = steps.build(name, placed ?? code, idempotency);
  if (settings.createUserNamespace) await ensureOwnNamespace(deps, user);

  if (upload && !placed) {
    // A backend that cannot store code with the create (local, or code too large for a ConfigMap)
    // stores it first and we remove it on failure. Keyed, it is named after the Job and the code, so
    // a retry stores to (and finds) the place an earlier attempt's Job may already use.
    const id = idempotency ? `${name}-${(codeSha256 ?? '').slice(0, 12)}` : undefined;
    const expiresAt = new Date(Date.now() + settings.uploadTtlSeconds * 1000);
    const { code: stored } = await storeNormalized(deps, user, upload, expiresAt, id);
    objects = steps.build(name, stored, idempotency);
    let result: { created: T; first: boolean };
    try {
      result = await createOrFindExisting(steps, objects, stored, {}, idempotency);
    } catch (error) {
      // An earlier attempt of this very request whose Job exists (its create's answer lost) uses it.
      const earlier = idempotency ? await steps.existing(objects).catch(() => undefined) : undefined;
      if (!isSameRequest(earlier, idempotency)) await backend.deleteCode(stored, user).catch(() => undefined);
      throw error;
    }
    // A retry answered with the first attempt's job (local): the code this retry stored serves nothing.
    if (result.first) await backend.deleteCode(stored, user).catch(() => undefined);
    return result.created;
  }
  const placedUpload = placed && upload?.kind === 'archive' ? upload : undefined;
  return (await createOrFindExisting(steps, objects, placed ?? code, { upload: placedUpload }, idempotency)).created;
}

/** A backend that answers a keyed retry with a Conflict (local) still gets the first attempt's job back. */
async function createOrFindExisting<O extends { namespace: string }, T extends V1Job | V1CronJob>(
  steps: SubmitSteps<O, T>,
  objects: O,
  code: StoredCode | undefined,
  createOptions: CreateOptions,
  idempotency: Idempotency | undefined,
): Promise<{ created: T; first: boolean }> {
  try {
    return { created: await steps.create(objects, code, createOptions), first: false };
  } catch (error) {
    if (!idempotency || !(error instanceof HttpError) || error.status !== 409) throw error;
    const existing = await steps.existing(objects).catch(() => undefined);
    if (existing && isSameRequest(existing, idempotency)) return { created: existing, first: true };
    throw error;
  }
}

/** An existing object made by an earlier attempt of this request: same Idempotency-Key, same request. */
function isSameRequest(existing: V1Job | V1CronJob | undefined, idempotency: Idempotency | undefined): boolean {
  const metadata = existing?.metadata;
  return (
    !!idempotency &&
    metadata?.labels?.[labels.idempotencyKey] === idempotency.label &&
    metadata.annotations?.[annotations.requestSha256] === idempotency.requestSha256
  );
}

/** With `events: false` (a client polling for the state) the events are not listed: one Kubernetes call less per poll. */
export async function showJob(deps: Deps, user: User, name: string, options: { events?: boolean } = {}): Promise<JobDetail> {
  const job = await deps.backend.getJob(user.namespace, name);
  const pods = await deps.backend.listPods(user.namespace, { jobName: name });
  if (options.events === false) return jobDetail(job, pods);
  const events = await deps.backend
    .listEvents?.(user.namespace, { involvedNames: [name, ...pods.map((p) => p.metadata?.name ?? '')] })
    .catch((error: unknown) => {
      // Events only explain; a cluster whose role predates them (no events list) still shows the job.
      if (toHttpError(error).status === 403) return undefined;
      throw error;
    });
  return jobDetail(job, pods, events);
}

interface PageCursor {
  createdAt: string;
  name: string;
}

function encodeCursor(job: V1Job): string {
  const cursor: PageCursor = { createdAt: new Date(submittedAt(job)).toISOString(), name: job.metadata?.name ?? '' };
  return Buffer.from(JSON.stringify(cursor)).toString('base64url');
}

function decodeCursor(token: string): PageCursor {
  try {
    const cursor = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as PageCursor;
    if (typeof cursor.createdAt !== 'string' || typeof cursor.name !== 'string') throw new Error('shape');
    return cursor;
  } catch {
    throw new BadRequest('continue: not a valid continue token', 'continue');
  }
}

function isAfter(job: V1Job, cursor: PageCursor): boolean {
  const created = new Date(submittedAt(job)).toISOString();
  return created < cursor.createdAt || (created === cursor.createdAt && (job.metadata?.name ?? '') > cursor.name);
}

/** The admin view: every user's jobs (kbatch-managed, in any namespace), newest first. */
async function listEveryUsersJobs(deps: Deps, raw: boolean): Promise<V1Job[]> {
  const jobs: V1Job[] = [];
  let continueToken: string | undefined;
  do {
    const page = await deps.backend.listJobsOfAllUsers({ limit: 500, continueToken, raw });
    jobs.push(...page.items.filter((job) => job.metadata?.labels?.[labels.component] !== 'upload-writer'));
    continueToken = page.continueToken;
  } while (continueToken);
  return newestFirst(jobs);
}

/**
 * All of the user's jobs, newest first; the cursor is (createdAt, name) so pages stay stable as jobs come and go.
 * `raw`: as the API server sent them (see ListOptions.raw), for readers that only summarise them.
 */
export async function listAllJobs(deps: Deps, user: User, raw = false): Promise<V1Job[]> {
  const { namespace } = user;
  const jobs: V1Job[] = [];
  let continueToken: string | undefined;
  do {
    const page = await deps.backend.listJobs(namespace, { limit: 500, continueToken, raw });
    // Upload writer Jobs (kbatch's own plumbing before uploads streamed; gone with their TTL) are not the user's work.
    jobs.push(...page.items.filter((job) => job.metadata?.labels?.[labels.component] !== 'upload-writer'));
    continueToken = page.continueToken;
  } while (continueToken);
  return newestFirst(jobs);
}

/** A page of jobs for summaries (lib/jobs/views.ts jobSummary): read raw, see ListOptions.raw. */
export async function listJobsPage(deps: Deps, user: User, limit: number, continueToken?: string, allUsers = false) {
  let jobs = allUsers ? await listEveryUsersJobs(deps, true) : await listAllJobs(deps, user, true);
  if (continueToken) {
    const cursor = decodeCursor(continueToken);
    jobs = jobs.filter((job) => isAfter(job, cursor));
  }
  const page = jobs.slice(0, limit);
  return { items: page, continueToken: jobs.length > limit ? encodeCursor(page[page.length - 1]!) : undefined };
}

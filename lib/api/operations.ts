import type { V1CronJob, V1Job } from '@kubernetes/client-node';
import type { User } from '../auth/types.ts';
import { BadRequest } from '../http/errors.ts';
import { buildCronJobObjects, buildJobObjects } from '../k8s/builders.ts';
import { jobNameFor, labels } from '../k8s/names.ts';
import type { JobSpec } from '../jobs/spec.ts';
import { normalizeUpload, type ArchiveEntry } from '../uploads/archive.ts';
import { signUploadReference, verifyUploadReference, type StoredCode } from '../uploads/reference.ts';
import { jobDetail, newestFirst, submittedAt, type JobDetail } from '../jobs/views.ts';
import type { Deps } from './deps.ts';
import { ensureOwnNamespace } from './namespace.ts';

/** The steps shared by the native API, the upstream-compatible API and every function target. */

export async function storeUpload(deps: Deps, user: User, entries: ArchiveEntry[]) {
  const { settings, backend } = deps;
  if (!entries.length) throw new BadRequest('code: the upload contains no files', 'code');
  const upload = normalizeUpload(entries, { maxBytes: settings.maxUploadBytes, maxFiles: settings.maxUploadFiles });
  await ensureOwnNamespace(deps, user);
  const expiresAt = new Date(Date.now() + settings.uploadTtlSeconds * 1000);
  const code = await backend.storeCode(user, upload, expiresAt);
  const reference = await signUploadReference({ user: user.name, code, bytes: upload.bytes, files: upload.files, sha256: upload.sha256 }, settings.uploadSecret, settings.uploadTtlSeconds);
  return { reference, code, upload, expiresAt };
}

export async function submitJob(deps: Deps, user: User, spec: JobSpec, inlineCode?: StoredCode): Promise<V1Job> {
  return submit(deps, user, spec, inlineCode, (code) => {
    const objects = buildJobObjects(spec, user, jobNameFor(spec.name), jobOptions(deps, code));
    return () => deps.backend.createJob(objects, code);
  });
}

export async function submitCronJob(deps: Deps, user: User, spec: JobSpec, schedule: string, inlineCode?: StoredCode): Promise<V1CronJob> {
  return submit(deps, user, spec, inlineCode, (code) => {
    const objects = buildCronJobObjects(spec, schedule, user, jobNameFor(spec.name), jobOptions(deps, code));
    return () => deps.backend.createCronJob(objects, code);
  });
}

function jobOptions(deps: Deps, code: StoredCode | undefined) {
  return { settings: deps.settings, profiles: deps.admin.profiles, template: deps.admin.jobTemplate, code };
}

/** Resolves the code (inline or by signed reference), builds, ensures the namespace, creates. */
async function submit<T>(deps: Deps, user: User, spec: JobSpec, inlineCode: StoredCode | undefined, plan: (code: StoredCode | undefined) => () => Promise<T>): Promise<T> {
  const { settings, backend } = deps;
  try {
    let code = inlineCode;
    if (spec.upload) {
      if (inlineCode) throw new BadRequest('upload: send either files or an upload reference, not both', 'upload');
      code = (await verifyUploadReference(spec.upload, user.name, settings.uploadSecret)).code;
    }
    const create = plan(code);
    if (settings.createUserNamespace) await ensureOwnNamespace(deps, user);
    return await create();
  } catch (error) {
    // Code uploaded with this very request belongs to this submit alone; a referenced upload may serve others.
    if (inlineCode) await backend.deleteCode(inlineCode).catch(() => undefined);
    throw error;
  }
}

export async function showJob(deps: Deps, user: User, name: string): Promise<JobDetail> {
  const job = await deps.backend.getJob(user.namespace, name);
  const pods = await deps.backend.listPods(user.namespace, { jobName: name });
  return jobDetail(job, pods);
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

/** All of the user's jobs, newest first; the cursor is (createdAt, name) so pages stay stable as jobs come and go. */
export async function listAllJobs(deps: Deps, user: User): Promise<V1Job[]> {
  const { namespace } = user;
  const jobs: V1Job[] = [];
  let continueToken: string | undefined;
  do {
    const page = await deps.backend.listJobs(namespace, { limit: 500, continueToken });
    // Upload writer Jobs are kbatch's own plumbing, not the user's work.
    jobs.push(...page.items.filter((job) => job.metadata?.labels?.[labels.component] !== 'upload-writer'));
    continueToken = page.continueToken;
  } while (continueToken);
  return newestFirst(jobs);
}

export async function listJobsPage(deps: Deps, user: User, limit: number, continueToken?: string) {
  let jobs = await listAllJobs(deps, user);
  if (continueToken) {
    const cursor = decodeCursor(continueToken);
    jobs = jobs.filter((job) => isAfter(job, cursor));
  }
  const page = jobs.slice(0, limit);
  return { items: page, continueToken: jobs.length > limit ? encodeCursor(page[page.length - 1]!) : undefined };
}

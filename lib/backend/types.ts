import type { Readable } from 'node:stream';
import type { CoreV1Event, V1CronJob, V1Job, V1Namespace, V1Pod } from '@kubernetes/client-node';
import type { User } from '../auth/types.ts';
import type { CronJobObjects, JobObjects } from '../k8s/builders.ts';
import type { NormalizedUpload } from '../uploads/archive.ts';
import type { StoredCode } from '../uploads/reference.ts';
import type { StreamedTarSummary } from '../uploads/tar-stream.ts';
import type { StreamedUploadOptions } from './kubernetes/streamed-upload.ts';

export interface ListOptions {
  limit?: number;
  continueToken?: string;
  /**
   * The objects as the API server sends them, without client-node's models: timestamps are RFC 3339
   * strings, keys in the server's order, newer fields kept, metadata.managedFields left out. Much
   * cheaper to read; for callers that take either shape (lib/jobs/views.ts), not for the upstream wire
   * format. Other backends ignore it.
   */
  raw?: boolean;
}

export interface PodFilter {
  jobName?: string;
}

export interface CreateOptions {
  /**
   * Code sent with this very submit, not stored yet: the create stores it at `code` (from
   * `placeCode`) once the owner exists, owned by it, so a refused submit never stored anything.
   */
  upload?: NormalizedUpload;
}

export interface LogOptions {
  follow: boolean;
  /** RFC 3339; resumes a stream after the last line a client saw. */
  sinceTime?: string;
  tailLines?: number;
  timestamps?: boolean;
  container?: string;
}

/**
 * Where jobs run. Both implementations speak Kubernetes object shapes, so handlers, views and the
 * upstream wire format do not care whether a job is a real Job or a local process.
 */
export interface Backend {
  readonly kind: 'kubernetes' | 'local';
  /**
   * The Hub name recorded as owner of a namespace: `undefined` when the namespace does not exist,
   * `null` when it exists without a record (made by an admin, or by upstream kbatch-proxy). Owners
   * never change, so an implementation may remember the answer for an existing namespace.
   */
  namespaceOwner(namespace: string): Promise<string | null | undefined>;
  /**
   * Creates the namespace, with its owner record, unless it exists; never changes an existing one.
   * Answers the owner recorded on the namespace now (someone else's if it already existed), for
   * the caller to check.
   */
  ensureNamespace(namespace: V1Namespace): Promise<string | null>;
  /** Stores a standalone upload (POST /uploads), owned by nothing until a submit claims it. */
  storeCode(owner: Pick<User, 'name' | 'namespace'>, upload: NormalizedUpload, expiresAt: Date): Promise<StoredCode>;
  deleteCode(code: StoredCode): Promise<void>;
  /**
   * Streams a tar (gzip'd when `gzip`) into the owner's volume with bounded memory, checking it on
   * the way (lib/uploads/tar-stream.ts); a refused upload leaves nothing. Optional: a backend
   * without it gets the upload buffered and stored through storeCode (lib/api/streamed-upload.ts).
   */
  storeCodeStream?(
    owner: Pick<User, 'name' | 'namespace'>,
    source: Readable,
    options: StreamedUploadOptions,
  ): Promise<{ code: StoredCode; summary: StreamedTarSummary }>;
  /**
   * Where `createJob` will store code sent with a submit (pure: no I/O), so the objects can be built
   * and every check run before anything is stored. A backend without it gets the code stored first
   * by `storeCode` and removed by the caller on failure.
   */
  placeCode?(owner: Pick<User, 'name' | 'namespace'>, upload: NormalizedUpload, ownerName: string): StoredCode;
  /**
   * Creates the Job, its Secret and (with `options.upload`) its code. On failure nothing this call
   * created remains; on success the Secret and `code` (when stored as ConfigMaps) are owned by the
   * Job, so deleting the Job removes them. A Job that exists with the same idempotency label is
   * returned (completed if an earlier attempt was interrupted) instead of a Conflict.
   */
  createJob(objects: JobObjects, code: StoredCode | undefined, options?: CreateOptions): Promise<V1Job>;
  /** Like createJob, with the CronJob as owner of the Secret and code. */
  createCronJob(objects: CronJobObjects, code: StoredCode | undefined, options?: CreateOptions): Promise<V1CronJob>;
  listCronJobs(namespace: string): Promise<V1CronJob[]>;
  /** Pauses or resumes a CronJob's schedule. Optional: the local backend runs no schedules. */
  setCronJobSuspended?(namespace: string, name: string, suspended: boolean): Promise<V1CronJob>;
  /** Runs a CronJob now, as a Job owned by it (`kubectl create job --from=cronjob/NAME`). Optional like the above. */
  runCronJob?(namespace: string, name: string): Promise<V1Job>;
  getCronJob(namespace: string, name: string): Promise<V1CronJob>;
  /** Foreground: its Jobs and their pods go first. */
  deleteCronJob(namespace: string, name: string): Promise<V1CronJob>;
  listJobs(namespace: string, options: ListOptions): Promise<{ items: V1Job[]; continueToken?: string }>;
  /** Jobs kbatch manages in every namespace (the admin view); the owner is each job's username annotation. */
  listJobsOfAllUsers(options: ListOptions): Promise<{ items: V1Job[]; continueToken?: string }>;
  /** Resolves when the backend can serve (the Kubernetes API answers, the data dir is writable); for /readyz. */
  ping(signal: AbortSignal): Promise<void>;
  getJob(namespace: string, name: string): Promise<V1Job>;
  /** Foreground deletion: the Job is gone only after its pods, so "deleted" means nothing is running. */
  deleteJob(namespace: string, name: string): Promise<V1Job>;
  /** All pods of the namespace, or those of one job. */
  listPods(namespace: string, filter?: PodFilter): Promise<V1Pod[]>;
  getPod(namespace: string, name: string): Promise<V1Pod>;
  /**
   * Recent events about the named objects (a job and its pods), for `job show`'s "why pending".
   * Optional: a backend without events (the local one) leaves it out and shows none.
   */
  listEvents?(namespace: string, filter: { involvedNames: string[] }): Promise<CoreV1Event[]>;
  /** A log stream that ends by itself when a followed pod finishes. */
  podLogs(namespace: string, pod: string, options: LogOptions, signal: AbortSignal): Promise<Readable>;
  close?(): Promise<void>;
}

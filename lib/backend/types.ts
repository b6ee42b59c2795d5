import type { Readable } from 'node:stream';
import type { CoreV1Event, V1CronJob, V1Job, V1Namespace, V1Pod } from '@kubernetes/client-node';
import type { User } from '../auth/types.ts';
import type { OutputFile } from '../contract.ts';
import type { ByteRange } from '../jobs/outputs.ts';
import type { CronJobObjects, JobObjects } from '../k8s/builders.ts';
import type { ArchiveUpload, NormalizedUpload } from '../uploads/archive.ts';
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
  upload?: ArchiveUpload;
}

export interface LogOptions {
  follow: boolean;
  /** RFC 3339; resumes a stream after the last line a client saw. */
  sinceTime?: string;
  tailLines?: number;
  timestamps?: boolean;
  container?: string;
}

/** An output file opened for reading (Backend.readOutput). */
export interface OutputRead {
  /** The whole file's size. */
  size: number;
  /** The inclusive byte positions being sent; absent: the whole file. */
  range?: { start: number; end: number };
  /** The bytes, with backpressure; destroying it (a client gone) stops the read. */
  stream: Readable;
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
  /**
   * Stores code held in memory (a standalone upload, or code of a submit that `placeCode` could not
   * place), owned by nothing until a submit claims it; the caller removes it if the submit fails.
   * `id` may name it, as StreamedUploadOptions.id does.
   */
  storeCode(owner: Pick<User, 'name' | 'namespace'>, upload: ArchiveUpload, expiresAt: Date, id?: string): Promise<StoredCode>;
  /** Removes stored code (a submit that failed after storing it); gone already is fine. */
  deleteCode(code: StoredCode, owner?: Pick<User, 'name' | 'namespace'>): Promise<void>;
  /**
   * Streams a tar (gzip'd when `gzip`) into the owner's storage (the volume; the local data dir)
   * with bounded memory, checking it on the way (lib/uploads/tar-stream.ts); a refused upload
   * leaves nothing. Every upload too large to hold in memory comes this way.
   */
  storeCodeStream(
    owner: Pick<User, 'name' | 'namespace'>,
    source: Readable,
    options: StreamedUploadOptions,
  ): Promise<{ code: StoredCode; summary: StreamedTarSummary }>;
  /**
   * Where `createJob` will store code sent with a submit (pure: no I/O), so the objects can be built
   * and every check run before anything is stored. Without it, or when it answers undefined (code
   * too large to create with the Job), the code is stored first and removed by the caller on failure.
   */
  placeCode?(owner: Pick<User, 'name' | 'namespace'>, upload: NormalizedUpload, ownerName: string): StoredCode | undefined;
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
  /**
   * Job outputs (lib/jobs/outputs.ts): what the job wrote to $KBATCH_OUTPUTS_DIR, kept in the owner's
   * own volume (namespace directory) by job name, so they outlive the Job. Each call looks only in
   * `owner`'s namespace. `undefined`: no outputs directory for this job (never written, or deleted).
   * Regular files only, sorted by path; symlinks and other special files are left out.
   */
  listOutputs(owner: Pick<User, 'name' | 'namespace'>, job: string): Promise<OutputFile[] | undefined>;
  /**
   * Opens one output file (`path` as checked by outputFilePath) for reading from `range` (resolved
   * against its size, RangeNotSatisfiable outside it). NotFound for a path that is missing or not a
   * regular file, or reached through a symlink; BadRequest for a directory. The read stops when
   * `signal` aborts.
   */
  readOutput(
    owner: Pick<User, 'name' | 'namespace'>,
    job: string,
    path: string,
    range: ByteRange | undefined,
    signal: AbortSignal,
  ): Promise<OutputRead>;
  /** The outputs as a tar.gz stream (symlinks stored as links, never followed); NotFound when there are none. */
  archiveOutputs(owner: Pick<User, 'name' | 'namespace'>, job: string, signal: AbortSignal): Promise<Readable>;
  /** Removes the outputs; answers how many regular files they held, `undefined` when there were none. */
  deleteOutputs(owner: Pick<User, 'name' | 'namespace'>, job: string): Promise<number | undefined>;
  close?(): Promise<void>;
}

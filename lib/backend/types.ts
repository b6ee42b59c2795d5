import type { Readable } from 'node:stream';
import type { V1CronJob, V1Job, V1Namespace, V1Pod } from '@kubernetes/client-node';
import type { User } from '../auth/types.ts';
import type { CronJobObjects, JobObjects } from '../k8s/builders.ts';
import type { NormalizedUpload } from '../uploads/archive.ts';
import type { StoredCode } from '../uploads/reference.ts';
import type { StreamedTarSummary } from '../uploads/tar-stream.ts';
import type { StreamedUploadOptions } from './kubernetes/streamed-upload.ts';

export interface ListOptions {
  limit?: number;
  continueToken?: string;
}

export interface PodFilter {
  jobName?: string;
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
  storeCode(owner: Pick<User, 'name' | 'namespace'>, upload: NormalizedUpload, expiresAt: Date): Promise<StoredCode>;
  deleteCode(code: StoredCode): Promise<void>;
  /**
   * Streams a tar (gzip'd when `gzip`) into the owner's volume with bounded memory, checking it on
   * the way (lib/uploads/tar-stream.ts); a refused upload leaves nothing. Optional: a backend
   * without it gets the upload buffered and stored through storeCode (lib/api/streamed-upload.ts).
   */
  storeCodeStream?(owner: Pick<User, 'name' | 'namespace'>, source: Readable, options: StreamedUploadOptions): Promise<{ code: StoredCode; summary: StreamedTarSummary }>;
  /**
   * Creates the Job and its Secret. On failure nothing this call created remains (the code was
   * stored earlier; removing it is the caller's choice); on success the Secret and `code` (when
   * stored as ConfigMaps) are owned by the Job, so deleting the Job removes them.
   */
  createJob(objects: JobObjects, code: StoredCode | undefined): Promise<V1Job>;
  /** Like createJob, with the CronJob as owner of the Secret and code. */
  createCronJob(objects: CronJobObjects, code: StoredCode | undefined): Promise<V1CronJob>;
  listCronJobs(namespace: string): Promise<V1CronJob[]>;
  getCronJob(namespace: string, name: string): Promise<V1CronJob>;
  /** Foreground: its Jobs and their pods go first. */
  deleteCronJob(namespace: string, name: string): Promise<V1CronJob>;
  listJobs(namespace: string, options: ListOptions): Promise<{ items: V1Job[]; continueToken?: string }>;
  getJob(namespace: string, name: string): Promise<V1Job>;
  /** Foreground deletion: the Job is gone only after its pods, so "deleted" means nothing is running. */
  deleteJob(namespace: string, name: string): Promise<V1Job>;
  /** All pods of the namespace, or those of one job. */
  listPods(namespace: string, filter?: PodFilter): Promise<V1Pod[]>;
  getPod(namespace: string, name: string): Promise<V1Pod>;
  /** A log stream that ends by itself when a followed pod finishes. */
  podLogs(namespace: string, pod: string, options: LogOptions, signal: AbortSignal): Promise<Readable>;
  close?(): Promise<void>;
}

import type { Readable } from 'node:stream';
import type { V1CronJob, V1Job, V1Namespace, V1Pod } from '@kubernetes/client-node';
import type { CronJobObjects, JobObjects } from '../k8s/builders.ts';
import type { NormalizedUpload } from '../uploads/archive.ts';
import type { StoredCode } from '../uploads/reference.ts';

export interface ListOptions {
  limit?: number;
  continueToken?: string;
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
  ensureNamespace(namespace: V1Namespace): Promise<void>;
  /** Stores a standalone upload (POST /uploads), owned by nothing until a submit claims it. */
  storeCode(username: string, upload: NormalizedUpload, expiresAt: Date): Promise<StoredCode>;
  deleteCode(code: StoredCode): Promise<void>;
  /**
   * Where `createJob` will store code sent with a submit (pure: no I/O), so the objects can be built
   * and every check run before anything is stored. A backend without it gets the code stored first
   * by `storeCode` and removed by the caller on failure.
   */
  placeCode?(username: string, upload: NormalizedUpload, ownerName: string): StoredCode;
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
  getCronJob(namespace: string, name: string): Promise<V1CronJob>;
  /** Foreground: its Jobs and their pods go first. */
  deleteCronJob(namespace: string, name: string): Promise<V1CronJob>;
  listJobs(namespace: string, options: ListOptions): Promise<{ items: V1Job[]; continueToken?: string }>;
  getJob(namespace: string, name: string): Promise<V1Job>;
  /** Foreground deletion: the Job is gone only after its pods, so "deleted" means nothing is running. */
  deleteJob(namespace: string, name: string): Promise<V1Job>;
  listPods(namespace: string, labelSelector?: string): Promise<V1Pod[]>;
  getPod(namespace: string, name: string): Promise<V1Pod>;
  /** A log stream that ends by itself when a followed pod finishes. */
  podLogs(namespace: string, pod: string, options: LogOptions, signal: AbortSignal): Promise<Readable>;
  close?(): Promise<void>;
}

export const jobNameLabel = 'batch.kubernetes.io/job-name';
export const legacyJobNameLabel = 'job-name';

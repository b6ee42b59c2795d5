import type { Readable } from 'node:stream';
import { apiPaths, deleteOutputsQuery, idempotencyKeyHeader, type OutputList } from '../lib/contract.ts';
import type { V1CronJob, V1Job, V1Pod } from '@kubernetes/client-node';
import type { JobSpec } from '../lib/jobs/spec.ts';
import type { JobDetail, JobSummary } from '../lib/jobs/views.ts';
import { camelCaseKeys } from '../lib/k8s/wire.ts';
import { ApiClient, type FetchLike, type HttpResponse } from './client.ts';

/**
 * Every call the CLI makes, typed, with every path taken from the shared contract: commands call
 * these and never build a path or a query themselves.
 */

export interface WhoAmI {
  name: string;
  groups?: string[];
  namespace?: string;
}

type Quantities = Record<string, string | number> | null | undefined;

export interface Profile {
  description?: string;
  display_name?: string;
  image?: string;
  resources?: { requests?: Quantities; limits?: Quantities } | null;
}

export interface JobPage {
  items: JobSummary[];
  continue: string | null;
}

export interface LogQuery {
  follow?: boolean;
  pod?: string;
  /** RFC 3339; only lines after it. */
  since?: string;
  timestamps?: boolean;
  tail?: number;
}

/** A multipart body ready to stream: `job submit --code`. */
export interface UploadBody {
  stream: Readable;
  contentType: string;
  length: number;
}

/**
 * Paths of the upstream-compatible API (kbatch-proxy's), which the server also serves. Pods and
 * cronjobs exist only there, and the raw Kubernetes Job (`-o k8s`) is what its `jobs/NAME` answers.
 */
const upstreamPaths = {
  job: (name: string) => `jobs/${encodeURIComponent(name)}`,
  pods: 'pods',
  pod: (name: string) => `pods/${encodeURIComponent(name)}`,
  cronJobs: 'cronjobs',
  cronJob: (name: string) => `cronjobs/${encodeURIComponent(name)}`,
} as const;

/** The upstream API's objects are the Python client's `to_dict()`: snake_case with nulls. Back to Kubernetes' own JSON. */
export function fromUpstreamWire<T>(value: unknown): T {
  const withoutNulls = (item: unknown): unknown => {
    if (Array.isArray(item)) return item.map(withoutNulls);
    if (item && typeof item === 'object') {
      return Object.fromEntries(
        Object.entries(item as Record<string, unknown>)
          .filter(([, v]) => v !== null)
          .map(([k, v]) => [k, withoutNulls(v)]),
      );
    }
    return item;
  };
  return withoutNulls(camelCaseKeys(value)) as T;
}

/** DELETE job's answer; with `?outputs=true` also `job` (null when the Job was already gone) and `outputs` (files removed). */
export interface DeleteResult {
  deleted?: string;
  job?: string | null;
  outputs?: number;
}

/** What `cronjob submit` sends: the CronJob manifest upstream's CLI would build, and its code as a zip. */
export interface CronJobSubmission {
  job: Record<string, unknown>;
  code?: { binary_data: { code: string } };
}

export class KbatchApi {
  constructor(readonly http: ApiClient) {}

  /** The API at a URL (ending with a slash) with a token; `fetch` is replaced in tests. */
  static at(baseUrl: string, token: string | undefined, fetch?: FetchLike): KbatchApi {
    return new KbatchApi(new ApiClient(baseUrl, token, fetch));
  }

  get baseUrl(): string {
    return this.http.baseUrl;
  }

  /** Who the token belongs to; `kbatch configure` checks a token with it. */
  whoAmI(): Promise<WhoAmI> {
    return this.http.json<WhoAmI>('GET', apiPaths.authorized);
  }

  /** The server's version, from its API document (which needs no token). */
  async serverVersion(timeoutMs: number): Promise<string | undefined> {
    const document = await this.http.json<{ info?: { version?: string } }>('GET', apiPaths.openapi, { timeoutMs });
    return document.info?.version;
  }

  profiles(): Promise<Record<string, Profile>> {
    return this.http.json<Record<string, Profile>>('GET', apiPaths.profiles);
  }

  /** One page of jobs, newest first; with `all`, every page joined (and no continue token). */
  async listJobs(options: { limit?: number; all?: boolean; allUsers?: boolean } = {}): Promise<JobPage> {
    const items: JobSummary[] = [];
    let token: string | undefined;
    for (;;) {
      const page = await this.http.json<JobPage>('GET', apiPaths.jobs, {
        query: { limit: options.limit, continue: token, allUsers: options.allUsers ? 'true' : undefined },
      });
      items.push(...page.items);
      if (!options.all || !page.continue) return { items, continue: options.all ? null : page.continue };
      token = page.continue;
    }
  }

  /** The Job exactly as Kubernetes holds it (`-o k8s`); its env values live in a Secret, not here. */
  async getJobManifest(name: string): Promise<V1Job> {
    return fromUpstreamWire<V1Job>(await this.http.json('GET', upstreamPaths.job(name), { what: `job ${name}` }));
  }

  async listPods(jobName?: string): Promise<V1Pod[]> {
    const list = await this.http.json<{ items?: unknown[] }>('GET', upstreamPaths.pods, { query: { job_name: jobName } });
    return (list.items ?? []).map((item) => fromUpstreamWire<V1Pod>(item));
  }

  async getPod(name: string): Promise<V1Pod> {
    return fromUpstreamWire<V1Pod>(await this.http.json('GET', upstreamPaths.pod(name), { what: `pod ${name}` }));
  }

  async listCronJobs(): Promise<V1CronJob[]> {
    const list = await this.http.json<{ items?: unknown[] }>('GET', upstreamPaths.cronJobs);
    return (list.items ?? []).map((item) => fromUpstreamWire<V1CronJob>(item));
  }

  async getCronJob(name: string): Promise<V1CronJob> {
    return fromUpstreamWire<V1CronJob>(await this.http.json('GET', upstreamPaths.cronJob(name), { what: `cronjob ${name}` }));
  }

  async deleteCronJob(name: string): Promise<void> {
    await this.http.json('DELETE', upstreamPaths.cronJob(name), { what: `cronjob ${name}` });
  }

  async submitCronJob(submission: CronJobSubmission): Promise<V1CronJob> {
    return fromUpstreamWire<V1CronJob>(await this.http.json('POST', upstreamPaths.cronJobs, { json: submission, timeoutMs: 0 }));
  }

  /** Pauses (`suspend`) or resumes (`resume`) a cronjob's schedule. */
  setCronJobSuspended(name: string, suspended: boolean): Promise<{ name: string; suspended: boolean }> {
    return this.http.json('POST', apiPaths.cronJobAction(name, suspended ? 'suspend' : 'resume'), { what: `cronjob ${name}` });
  }

  /** Runs a cronjob now, outside its schedule; answers the job it started. */
  runCronJob(name: string): Promise<JobDetail> {
    return this.http.json('POST', apiPaths.cronJobAction(name, 'run'), { what: `cronjob ${name}` });
  }

  /** `events: false` when only the state matters (a wait polling): the server skips listing events. */
  getJob(name: string, options: { events?: boolean } = {}): Promise<JobDetail> {
    return this.http.json<JobDetail>('GET', apiPaths.job(name), {
      what: `job ${name}`,
      query: { events: options.events === false ? 'false' : undefined },
    });
  }

  /** With `outputs`, the job's outputs go too; otherwise they outlive it. */
  deleteJob(name: string, options: { outputs?: boolean } = {}): Promise<DeleteResult> {
    return this.http.json<DeleteResult>('DELETE', apiPaths.job(name), {
      what: `job ${name}`,
      query: { [deleteOutputsQuery]: options.outputs ? 'true' : undefined },
    });
  }

  /** Every file the job wrote under its outputs directory; they outlive the Job. */
  listOutputs(name: string): Promise<OutputList> {
    return this.http.json<OutputList>('GET', apiPaths.jobOutputs(name), { what: `outputs of job ${name}` });
  }

  /** Removes the job's outputs (the job itself, if still there, is left alone). */
  async deleteOutputs(name: string): Promise<void> {
    await this.http.json('DELETE', apiPaths.jobOutputs(name), { what: `outputs of job ${name}` });
  }

  /**
   * One output file's bytes, from byte `from` on (`Range: bytes=from-`, answered 206) so a dropped
   * download resumes where it stopped. No timeout: a large file over a slow link takes long.
   */
  outputFile(name: string, path: string, from = 0, signal?: AbortSignal): Promise<HttpResponse> {
    return this.http.request('GET', apiPaths.jobOutputFile(name, path), {
      what: `output ${JSON.stringify(path)} of job ${name}`,
      stream: true,
      signal,
      headers: { accept: '*/*', ...(from > 0 ? { range: `bytes=${from}-` } : {}) },
    });
  }

  /** Every output file as one tar.gz stream. */
  outputsArchive(name: string, signal?: AbortSignal): Promise<HttpResponse> {
    return this.http.request('GET', apiPaths.jobOutputsArchive(name), {
      what: `outputs of job ${name}`,
      stream: true,
      signal,
      headers: { accept: 'application/gzip, */*' },
    });
  }

  /** The idempotency key makes a retried submit return the first job instead of creating a second. */
  submitJob(spec: JobSpec, idempotencyKey: string): Promise<JobDetail> {
    return this.http.json<JobDetail>('POST', apiPaths.jobs, { json: spec, headers: { [idempotencyKeyHeader]: idempotencyKey } });
  }

  submitJobWithCode(upload: UploadBody, idempotencyKey: string): Promise<JobDetail> {
    return this.http.json<JobDetail>('POST', apiPaths.jobs, {
      upload: true,
      body: upload.stream,
      // An upload over a slow link may take long; progress shows it is moving.
      timeoutMs: 0,
      headers: { 'content-type': upload.contentType, 'content-length': String(upload.length), [idempotencyKeyHeader]: idempotencyKey },
    });
  }

  /** The Hub's own record of the token (`GET {hub api}/user`): `configure --jupyterhub-url` checks the token there too. */
  static hubUser(hubApiUrl: string, token: string | undefined, fetch?: FetchLike): Promise<{ name: string; kind?: string }> {
    return new ApiClient(hubApiUrl, token, fetch).json('GET', 'user', { what: "the token's Hub user" });
  }

  /** The raw log stream; the caller reads it as it comes. */
  jobLogs(name: string, query: LogQuery): Promise<HttpResponse> {
    return this.http.request('GET', apiPaths.jobLogs(name), {
      what: `job ${name}`,
      query: { follow: query.follow, pod: query.pod, since: query.since, timestamps: query.timestamps, tail: query.tail },
    });
  }
}

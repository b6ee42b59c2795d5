import type { Readable } from 'node:stream';
import { apiPaths, idempotencyKeyHeader } from '../lib/contract.ts';
import type { JobSpec } from '../lib/jobs/spec.ts';
import type { JobDetail, JobSummary } from '../lib/jobs/views.ts';
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
  async listJobs(options: { limit?: number; all?: boolean } = {}): Promise<JobPage> {
    const items: JobSummary[] = [];
    let token: string | undefined;
    for (;;) {
      const page = await this.http.json<JobPage>('GET', apiPaths.jobs, { query: { limit: options.limit, continue: token } });
      items.push(...page.items);
      if (!options.all || !page.continue) return { items, continue: options.all ? null : page.continue };
      token = page.continue;
    }
  }

  getJob(name: string): Promise<JobDetail> {
    return this.http.json<JobDetail>('GET', apiPaths.job(name), { what: `job ${name}` });
  }

  deleteJob(name: string): Promise<{ deleted?: string }> {
    return this.http.json<{ deleted?: string }>('DELETE', apiPaths.job(name), { what: `job ${name}` });
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

  /** The raw log stream; the caller reads it as it comes. */
  jobLogs(name: string, query: LogQuery): Promise<HttpResponse> {
    return this.http.request('GET', apiPaths.jobLogs(name), {
      what: `job ${name}`,
      query: { follow: query.follow, pod: query.pod, since: query.since, timestamps: query.timestamps, tail: query.tail },
    });
  }
}

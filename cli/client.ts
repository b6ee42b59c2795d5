import type { Readable } from 'node:stream';
import crossFetch from 'cross-fetch';
import { apiErrorFor, CliError, unreachable, UnreachableError, type RequestSubject } from './errors.ts';

/**
 * The slice of fetch the CLI uses. cross-fetch's types claim the DOM API, but on Node it is
 * node-fetch 2, whose bodies are Node streams (both are async-iterable) and which accepts a
 * Readable as a request body: that is how uploads stream and report progress.
 */
export interface HttpResponse {
  status: number;
  ok: boolean;
  headers: { get(name: string): string | null };
  text(): Promise<string>;
  body: AsyncIterable<Uint8Array> | null;
}

export interface HttpRequest {
  method: string;
  headers: Record<string, string>;
  body?: string | Buffer | Readable;
  signal?: AbortSignal;
}

export type FetchLike = (url: string, init: HttpRequest) => Promise<HttpResponse>;

export const defaultFetch = crossFetch as unknown as FetchLike;

export interface RequestOptions extends RequestSubject {
  query?: Record<string, string | number | boolean | undefined>;
  json?: unknown;
  body?: Buffer | Readable;
  headers?: Record<string, string>;
  /** Give up when no complete answer arrived in time; 0 waits forever (log streams, big uploads). */
  timeoutMs?: number;
}

/** Plain API calls answer in well under a second; a minute means the server or a proxy is stuck. */
export const defaultTimeoutMs = 60_000;

/** `{"detail": ...}` from our server and upstream's; the raw text (shortened) from anything else. */
export function errorDetail(text: string): string {
  try {
    const parsed = JSON.parse(text) as { detail?: unknown };
    if (typeof parsed.detail === 'string') return parsed.detail;
    if (parsed.detail !== undefined) return JSON.stringify(parsed.detail);
  } catch {
    /* not JSON: an HTML error page from a proxy, say */
  }
  const plain = text.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim();
  return plain.length > 300 ? `${plain.slice(0, 300)}…` : plain;
}

/** Talks to one kbatch server; every path is relative to its URL, which ends with a slash. */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string | undefined,
    private readonly fetchImpl: FetchLike = defaultFetch,
  ) {}

  url(path: string, query: RequestOptions['query'] = {}): string {
    const url = new URL(path, this.baseUrl);
    for (const [key, value] of Object.entries(query)) if (value !== undefined && value !== false) url.searchParams.set(key, String(value));
    return url.toString();
  }

  /** Sends a request; any non-2xx status becomes an ApiError carrying the server's detail. */
  async request(method: string, path: string, options: RequestOptions = {}): Promise<HttpResponse> {
    const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
    if (this.token) headers.authorization = `token ${this.token}`;
    let body = options.body;
    if (options.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = Buffer.from(JSON.stringify(options.json));
    }
    const signal = options.timeoutMs ? AbortSignal.timeout(options.timeoutMs) : undefined;
    let response: HttpResponse;
    try {
      response = await this.fetchImpl(this.url(path, options.query), { method, headers, body, signal });
    } catch (error) {
      throw this.failure(error, signal);
    }
    if (!response.ok) {
      const text = await response.text().catch(() => '');
      throw apiErrorFor(response.status, errorDetail(text), this.baseUrl, options);
    }
    return response;
  }

  /** A JSON call: a status error, a timeout or a body that is not JSON all become CliErrors. */
  async json<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const timed = { ...options, timeoutMs: options.timeoutMs ?? defaultTimeoutMs };
    const response = await this.request(method, path, timed);
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      throw this.failure(error);
    }
    try {
      return JSON.parse(text) as T;
    } catch {
      // Typically the Hub's login page: the URL points at the Hub, not at the kbatch service.
      throw new CliError(`${this.url(path)} did not answer with JSON: ${errorDetail(text).slice(0, 120)}`, 1, 'check the kbatch URL, e.g. https://hub.example.org/services/kbatch/');
    }
  }

  private failure(error: unknown, signal?: AbortSignal): UnreachableError {
    if (signal?.aborted) return new UnreachableError(`no answer from kbatch at ${this.baseUrl} in time (${(signal.reason as Error)?.message ?? 'timeout'})`);
    return unreachable(this.baseUrl, error);
  }
}

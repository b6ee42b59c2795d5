import type { Readable } from 'node:stream';
import { apiErrorFor, CliError, readErrorAnswer, unreachable, UnreachableError, type RequestSubject } from './errors.ts';
import { fetchTransport, type FetchLike, type HttpResponse } from './http.ts';

export type { FetchLike, HttpResponse } from './http.ts';

export interface RequestOptions extends RequestSubject {
  query?: Record<string, string | number | boolean | undefined>;
  json?: unknown;
  body?: Buffer | Readable;
  headers?: Record<string, string>;
  /** A long body the caller streams (a download): cut connections fail it instead of stalling it. */
  stream?: boolean;
  /** Aborts the request, or the reading of its body (a download that stalled). */
  signal?: AbortSignal;
  /** Give up when no complete answer arrived in time; 0 waits forever (log streams, big uploads). */
  timeoutMs?: number;
}

/** Plain API calls answer in well under a second; a minute means the server or a proxy is stuck. */
export const defaultTimeoutMs = 60_000;

/**
 * The transport: talks to one kbatch server, turning every failure into a CliError. Paths are
 * relative to its URL (which ends with a slash) and come from cli/api.ts, never from a command.
 */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string | undefined,
    private readonly fetchImpl: FetchLike = fetchTransport,
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
    const timeout = options.timeoutMs ? AbortSignal.timeout(options.timeoutMs) : undefined;
    const signal = timeout && options.signal ? AbortSignal.any([timeout, options.signal]) : (timeout ?? options.signal);
    let response: HttpResponse;
    try {
      response = await this.fetchImpl(this.url(path, options.query), { method, headers, body, signal, stream: options.stream });
    } catch (error) {
      throw this.failure(error, signal);
    }
    if (!response.ok) {
      const text = await response.text().catch(() => '');
      throw apiErrorFor(response.status, readErrorAnswer(text), this.baseUrl, options);
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
      throw new CliError(
        `${this.url(path)} did not answer with JSON: ${readErrorAnswer(text).detail.slice(0, 120)}`,
        1,
        'check the kbatch URL, e.g. https://hub.example.org/services/kbatch/',
      );
    }
  }

  private failure(error: unknown, signal?: AbortSignal): UnreachableError {
    if (signal?.aborted)
      return new UnreachableError(`no answer from kbatch at ${this.baseUrl} in time (${(signal.reason as Error)?.message ?? 'timeout'})`);
    return unreachable(this.baseUrl, error);
  }
}

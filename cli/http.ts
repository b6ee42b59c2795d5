import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { Readable } from 'node:stream';
import crossFetch from 'cross-fetch';

/**
 * The slice of fetch the CLI uses. cross-fetch's types claim the DOM API, but on Node it is node-fetch
 * 2, whose bodies are Node streams (both are async-iterable) and which accepts a Readable as a request
 * body: that is how uploads stream and report progress.
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

type NodeFetchResponse = HttpResponse & { body: Readable | null };
const nodeFetch = crossFetch as unknown as (url: string, init: Record<string, unknown>) => Promise<NodeFetchResponse>;

/**
 * fetch for the CLI, with one thing fetch does not do by itself: when the server answers before an
 * upload is fully sent (a 413 after the first megabytes, say), read the answer, then stop sending and
 * close the connection, instead of pushing the rest of the body into a socket nobody reads while the
 * process stays alive for minutes. Bodies are never decompressed (log streams pass through as sent).
 */
export const fetchTransport: FetchLike = async (url, init) => {
  const controller = new AbortController();
  const forwardAbort = () => controller.abort();
  init.signal?.addEventListener('abort', forwardAbort, { once: true });
  const upload = init.body instanceof Readable ? init.body : undefined;
  let uploadFinished = upload === undefined;
  upload?.once('end', () => (uploadFinished = true));
  // An upload gets a connection of its own, so it can be closed without touching any other request.
  const agent = upload ? (url.startsWith('https:') ? new HttpsAgent() : new HttpAgent()) : undefined;
  try {
    const response = await nodeFetch(url, {
      method: init.method,
      headers: init.headers,
      body: init.body,
      signal: controller.signal,
      agent,
      compress: false,
      redirect: init.method === 'GET' ? 'follow' : 'manual',
    });
    if (uploadFinished) return response;
    // An answer before the whole body was sent is the server refusing it: keep the answer, stop sending.
    const text = await response.text();
    upload?.destroy();
    agent?.destroy();
    return {
      status: response.status,
      ok: response.ok,
      headers: response.headers,
      text: async () => text,
      body: Readable.from([Buffer.from(text)]),
    };
  } finally {
    init.signal?.removeEventListener('abort', forwardAbort);
  }
};

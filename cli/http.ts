import { Agent as HttpAgent, type ClientRequest, type IncomingMessage } from 'node:http';
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
  /** The caller reads a long body (a download): a connection cut mid-body must fail it, not stall it. */
  stream?: boolean;
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
  // An upload gets a connection of its own, so it can be closed without touching any other request;
  // so does a download, so its response can be watched for a cut (see watchedAgent).
  let body: Readable | null = null;
  let cut = false;
  const onCut = () => {
    cut = true;
    body?.destroy(prematureClose());
  };
  const agent = upload
    ? url.startsWith('https:')
      ? new HttpsAgent()
      : new HttpAgent()
    : init.stream
      ? watchedAgent(url.startsWith('https:'), onCut)
      : undefined;
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
    if (init.stream) {
      body = response.body;
      if (cut) body?.destroy(prematureClose());
    }
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
    // A download's signal must still reach node-fetch while the body is read (a stall aborts it).
    if (!init.stream) init.signal?.removeEventListener('abort', forwardAbort);
  }
};

function prematureClose(): Error {
  return Object.assign(new Error('Premature close: the connection was cut before the end of the body'), {
    code: 'ERR_STREAM_PREMATURE_CLOSE',
  });
}

/**
 * An agent for one request that calls `onCut` when the response's connection closes before the
 * response is complete. node-fetch 2 pipes the response into the body it hands out and, for a
 * response with a Content-Length, never tells that body when the socket dies: a download cut
 * mid-file would wait forever instead of resuming. (It does for chunked responses only.)
 */
function watchedAgent(https: boolean, onCut: () => void): HttpAgent {
  const agent = https ? new HttpsAgent() : new HttpAgent();
  // addRequest is how every ClientRequest reaches its agent: the one place to see the request.
  const hooked = agent as unknown as { addRequest(request: ClientRequest, options: unknown): void };
  const addRequest = hooked.addRequest.bind(agent);
  hooked.addRequest = (request, options) => {
    request.once('response', (response: IncomingMessage) => {
      response.once('close', () => {
        if (!response.complete) onCut();
      });
    });
    addRequest(request, options);
  };
  return agent;
}

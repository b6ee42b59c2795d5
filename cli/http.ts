import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';

/**
 * The slice of fetch the CLI uses, on node:http rather than a fetch implementation, because an
 * upload needs what fetch does not give: the moment the server answers (a 413 after the first
 * megabytes, say), stop sending and close the connection, instead of pushing the rest of the body
 * into a socket nobody reads while the process stays alive for minutes.
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

/** Redirects a fetch would follow for a GET; more than this is a loop. */
const maxRedirects = 5;

function wrapResponse(response: IncomingMessage, request: ClientRequest, uploadUnfinished: boolean): HttpResponse {
  const status = response.statusCode ?? 0;
  // The request cannot be reused when its body was cut short: close the socket once the answer is read.
  if (uploadUnfinished) response.once('end', () => request.destroy());
  return {
    status,
    ok: status >= 200 && status < 300,
    headers: {
      get(name: string) {
        const value = response.headers[name.toLowerCase()];
        return value === undefined ? null : Array.isArray(value) ? value.join(', ') : value;
      },
    },
    async text() {
      const chunks: Buffer[] = [];
      for await (const chunk of response) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    },
    body: response,
  };
}

function send(url: URL, init: HttpRequest): Promise<{ response: IncomingMessage; request: ClientRequest; uploadUnfinished: boolean }> {
  return new Promise((resolve, reject) => {
    const body = init.body;
    const headers = { ...init.headers };
    // A body in hand gets its length, as fetch sends it; some gateways refuse a chunked POST.
    if (body !== undefined && !(body instanceof Readable)) headers['content-length'] = String(Buffer.byteLength(body));
    const request = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, { method: init.method, headers, signal: init.signal });
    // `on`, not `once`: a socket cut after the answer arrived may still report an error, and an
    // error event nobody listens to would end the process.
    request.on('error', (error) => {
      if (body instanceof Readable) body.destroy();
      reject(error);
    });
    request.once('response', (response) => {
      // An answer before the whole body was sent is the server refusing it: stop sending now.
      const uploadUnfinished = !request.writableFinished;
      if (uploadUnfinished && body instanceof Readable) {
        body.unpipe(request);
        body.destroy();
      }
      resolve({ response, request, uploadUnfinished });
    });
    if (body instanceof Readable) {
      body.on('error', (error) => request.destroy(error));
      body.pipe(request);
    } else request.end(body);
  });
}

/** fetch-like GET/POST/DELETE on node:http(s): follows redirects of GET requests, never decompresses. */
export const nodeFetch: FetchLike = async (url, init) => {
  let target = new URL(url);
  for (let redirects = 0; ; redirects++) {
    const { response, request, uploadUnfinished } = await send(target, init);
    const location = response.headers.location;
    const status = response.statusCode ?? 0;
    if (init.method === 'GET' && location && status >= 300 && status < 400 && redirects < maxRedirects) {
      response.resume();
      target = new URL(location, target);
      continue;
    }
    return wrapResponse(response, request, uploadUnfinished);
  }
};

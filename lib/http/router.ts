import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BadRequest, HttpError, NotFound, PayloadTooLarge, toHttpError } from './errors.ts';

/** A request as functions-framework hands it over: Express may already have buffered the body. */
export type IncomingRequest = IncomingMessage & { rawBody?: Buffer; body?: unknown };

export interface RequestContext {
  req: IncomingRequest;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  /** Aborted when the client goes away, so long streams and Kubernetes watches stop with it. */
  signal: AbortSignal;
}

/** Extra response headers; a list sends the header once per value (several Set-Cookie). */
export type ReplyHeaders = Record<string, string | string[]>;

export type Reply =
  | { status?: number; json: unknown; headers?: ReplyHeaders }
  | { status?: number; text: string; contentType?: string; headers?: ReplyHeaders }
  | { status?: number; stream: Readable | AsyncIterable<Uint8Array | string>; contentType?: string }
  | { status: number; empty: true; headers?: ReplyHeaders };

export type Handler = (ctx: RequestContext) => Promise<Reply>;

interface Route {
  method: string;
  segments: string[];
  handler: Handler;
}

export interface RouteDefinition {
  method: 'GET' | 'POST' | 'DELETE' | 'PUT' | 'PATCH';
  /** `/jobs/:name`; a trailing slash is optional on both sides, as FastAPI clients expect. */
  path: string;
  handler: Handler;
}

function splitPath(path: string): string[] {
  return path.split('/').filter((segment) => segment !== '');
}

function match(route: Route, segments: string[]): Record<string, string> | undefined {
  if (route.segments.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < segments.length; i++) {
    const pattern = route.segments[i]!;
    const actual = segments[i]!;
    if (pattern.startsWith(':')) {
      try {
        params[pattern.slice(1)] = decodeURIComponent(actual);
      } catch {
        return undefined;
      }
    } else if (pattern !== actual) {
      return undefined;
    }
  }
  return params;
}

export function errorBody(error: HttpError): Record<string, unknown> {
  // `detail` is what the upstream Python CLI prints; `status` and `field` help everyone else.
  return { detail: error.message, status: error.status, ...error.details };
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: ReplyHeaders = {}): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(payload), ...headers });
  res.end(payload);
}

export function sendError(res: ServerResponse, error: unknown): void {
  const httpError = toHttpError(error);
  if (httpError.status >= 500 && !(error instanceof HttpError)) console.error('kbatch: unexpected error:', error);
  if (res.headersSent) {
    // The 200 is gone: say why in-band, then cut the connection without the final chunk so
    // any HTTP client sees an incomplete response rather than a clean end.
    res.write(`\n[kbatch] stream aborted: ${httpError.message}\n`, () => res.destroy());
    return;
  }
  sendJson(res, httpError.status, errorBody(httpError));
}

async function sendReply(ctx: RequestContext, reply: Reply): Promise<void> {
  const { res } = ctx;
  if ('json' in reply) return sendJson(res, reply.status ?? 200, reply.json, reply.headers);
  if ('empty' in reply) {
    res.writeHead(reply.status, reply.headers);
    res.end();
    return;
  }
  if ('text' in reply) {
    res.writeHead(reply.status ?? 200, { 'content-type': reply.contentType ?? 'text/plain; charset=utf-8', ...reply.headers });
    res.end(reply.text);
    return;
  }
  // Proxies in front of the Hub (nginx) buffer unless told otherwise; log followers need every line at once.
  res.writeHead(reply.status ?? 200, {
    'content-type': reply.contentType ?? 'text/plain; charset=utf-8',
    'x-accel-buffering': 'no',
    'cache-control': 'no-store',
  });
  res.flushHeaders();
  const source = reply.stream instanceof Readable ? reply.stream : Readable.from(reply.stream);
  try {
    await pipeline(source, res, { signal: ctx.signal });
  } catch (error) {
    if (!ctx.signal.aborted) sendError(res, error);
  }
}

/**
 * Routes requests inside one functions-framework target. Paths are matched after the Hub's
 * service prefix when present, so the same handler serves `/services/kbatch/jobs/` through the
 * Hub and `/jobs/` when called directly (Knative, tests).
 */
export function createRouter(prefix: string, routes: RouteDefinition[]) {
  const table: Route[] = routes.map((r) => ({ method: r.method, segments: splitPath(r.path), handler: r.handler }));
  const prefixSegments = splitPath(prefix);

  return async function handle(req: IncomingRequest, res: ServerResponse): Promise<void> {
    const controller = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) controller.abort();
    });
    try {
      const url = new URL(req.originalUrl ?? req.url ?? '/', 'http://localhost');
      let segments = splitPath(url.pathname);
      if (prefixSegments.length && prefixSegments.every((s, i) => segments[i] === s)) {
        segments = segments.slice(prefixSegments.length);
      }
      const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
      let allowed = false;
      for (const route of table) {
        const params = match(route, segments);
        if (!params) continue;
        if (route.method !== method) {
          allowed = true;
          continue;
        }
        const ctx: RequestContext = { req, res, params, query: url.searchParams, signal: controller.signal };
        const reply = await route.handler(ctx);
        await sendReply(ctx, reply);
        return;
      }
      if (allowed) throw new HttpError(405, `Method ${req.method} not allowed on ${url.pathname}`);
      throw new NotFound(`No route for ${req.method} ${url.pathname}`);
    } catch (error) {
      sendError(res, error);
    }
  };
}

declare module 'node:http' {
  interface IncomingMessage {
    originalUrl?: string;
  }
}

/** Reads a body once: from functions-framework's buffer when it parsed one, else from the stream. */
export async function readBody(req: IncomingRequest, limitBytes: number): Promise<Buffer> {
  if (Buffer.isBuffer(req.rawBody)) {
    if (req.rawBody.length > limitBytes) throw new PayloadTooLarge(`Request body exceeds ${limitBytes} bytes`);
    return req.rawBody;
  }
  if (req.readableEnded) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limitBytes) throw new PayloadTooLarge(`Request body exceeds ${limitBytes} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export async function readJson(req: IncomingRequest, limitBytes = 8 * 1024 * 1024): Promise<unknown> {
  // functions-framework already parsed a JSON body; do not parse it twice.
  if (req.body !== null && typeof req.body === 'object' && !Buffer.isBuffer(req.body) && /json/i.test(req.headers['content-type'] ?? '') && req.rawBody?.length) return req.body;
  const body = await readBody(req, limitBytes);
  if (body.length === 0) throw new BadRequest('Request body is empty; expected JSON');
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new BadRequest('Request body is not valid JSON');
  }
}

export function queryFlag(query: URLSearchParams, name: string): boolean {
  const value = query.get(name);
  if (value === null) return false;
  return ['1', 'true', 'yes', 'on', ''].includes(value.toLowerCase());
}

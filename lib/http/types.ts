import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';

/**
 * A request as a handler sees it. `rawBody` is set only when functions-framework's own server
 * (its Express app, e.g. `functions-framework --target=...`) read the body before us; our server
 * never does. Only lib/http/body.ts looks at it.
 */
export type IncomingRequest = IncomingMessage & { rawBody?: Buffer; body?: unknown; originalUrl?: string };

export interface RequestContext {
  req: IncomingRequest;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  /** Aborted when the client goes away, so long streams and Kubernetes watches stop with it. */
  signal: AbortSignal;
}

export type Reply =
  | { status?: number; json: unknown; headers?: Record<string, string> }
  | { status?: number; text: string; contentType?: string }
  | { status?: number; stream: Readable | AsyncIterable<Uint8Array | string>; contentType?: string }
  | { status: number; empty: true };

export type Handler = (ctx: RequestContext) => Promise<Reply>;

export interface RouteDefinition {
  method: 'GET' | 'POST' | 'DELETE' | 'PUT' | 'PATCH';
  /** `/jobs/:name`; a trailing slash is optional on both sides, as FastAPI clients expect. */
  path: string;
  handler: Handler;
}

/** What the router hands to `http.createServer` and to `functions.http`. */
export type RequestListener = (req: IncomingRequest, res: ServerResponse) => Promise<void>;

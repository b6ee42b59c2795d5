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

/** Extra response headers; a list sends the header once per value (several Set-Cookie). */
export type ReplyHeaders = Record<string, string | string[]>;

export type Reply =
  | { status?: number; json: unknown; headers?: ReplyHeaders }
  | { status?: number; text: string; contentType?: string; headers?: ReplyHeaders }
  | { status?: number; stream: Readable | AsyncIterable<Uint8Array | string>; contentType?: string; headers?: ReplyHeaders }
  | { status: number; empty: true; headers?: ReplyHeaders };

export type Handler = (ctx: RequestContext) => Promise<Reply>;

export interface RouteDefinition {
  method: 'GET' | 'POST' | 'DELETE' | 'PUT' | 'PATCH';
  /** `/jobs/:name`; a trailing slash is optional on both sides, as FastAPI clients expect. */
  path: string;
  handler: Handler;
  /** Every API route has one (a unit test checks); the web page's routes have none. */
  doc?: RouteDoc;
}

/**
 * A route's entry in the OpenAPI document: lib/api/openapi.ts builds `paths` from the route table,
 * so the routes and their documentation cannot drift. Path parameters come from the `:name` segments.
 */
export interface RouteDoc {
  summary: string;
  /** Needs a Hub token: adds the security requirement and the errors every such route can answer. */
  auth?: boolean;
  /** Query parameters: name to JSON Schema. */
  query?: Record<string, object>;
  /** Request body: content type to JSON Schema (the schemas the server validates with, lib/jobs/schemas.ts). */
  body?: Record<string, object>;
  /** Success responses: status to a description, or to a description and a JSON body schema. */
  responses: Record<number, string | { description: string; schema: object }>;
  /** Error statuses beyond the common ones, answered with the Error body. */
  errors?: number[];
}

/** What the router hands to `http.createServer` and to `functions.http`. */
export type RequestListener = (req: IncomingRequest, res: ServerResponse) => Promise<void>;

import type { ServerResponse } from 'node:http';
import { assertIdentityEncoding } from './body.ts';
import { BadRequest, MethodNotAllowed, NotFound } from './errors.ts';
import { requestScope } from './lifecycle.ts';
import { beginRequest, noteRequest } from '../observability/request-log.ts';
import { sendError, sendReply } from './reply.ts';
import type { Handler, IncomingRequest, RequestContext, RequestListener, RouteDefinition } from './types.ts';

// The modules a handler needs, from one import as before the split (types, body, reply).
export type { Handler, IncomingRequest, Reply, ReplyHeaders, RequestContext, RouteDefinition, RouteDoc } from './types.ts';
export { isMultipart, readBody, readJson } from './body.ts';
export { errorBody, sendError, sendJson } from './reply.ts';

interface Route {
  method: string;
  segments: string[];
  handler: Handler;
  /** The pattern as logged and labelled in metrics: `/api/v1/jobs/:name`, never the raw path. */
  pattern: string;
}

function splitPath(path: string): string[] {
  return path.split('/').filter((segment) => segment !== '');
}

function decodeSegment(segment: string): string {
  let value: string;
  try {
    value = decodeURIComponent(segment);
  } catch {
    throw new BadRequest(`The path segment "${segment.slice(0, 100)}" has invalid percent-encoding`);
  }
  // No Kubernetes name is "." or "..", and passed on into an API URL they would climb out of it
  // (URL parsing resolves them: .../pods/.. reads the namespace itself).
  if (value === '.' || value === '..') throw new BadRequest(`"${value}" is not a name`);
  return value;
}

/**
 * Every `:name` in kbatch's routes names a Kubernetes object (job, pod, cronjob): an RFC 1123
 * subdomain. Checked here, before any handler, because the API server decodes the path it is sent:
 * a "/" in a name (from %2F) would address another resource (".../jobs/" lists or deletes them all).
 */
const kubernetesName = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;

function checkParam(key: string, value: string): void {
  if (key === 'name' && !kubernetesName.test(value)) {
    throw new BadRequest(
      `name: "${value.slice(0, 100)}" is not a valid name (lowercase letters, digits, "-" and ".", at most 253)`,
      'name',
    );
  }
}

function match(route: Route, segments: string[]): Record<string, string> | undefined {
  if (route.segments.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < segments.length; i++) {
    const pattern = route.segments[i]!;
    const actual = segments[i]!;
    if (pattern.startsWith(':')) params[pattern.slice(1)] = actual;
    else if (pattern !== actual) return undefined;
  }
  // Only a path that matches in full is judged: its parameters decoded and checked.
  for (const [key, raw] of Object.entries(params)) checkParam(key, (params[key] = decodeSegment(raw)));
  return params;
}

/** Path and query of a request target (origin-form `/a?b`, or absolute-form `http://host/a?b`), without trusting it to be a URL. */
function parseTarget(target: string): { path: string; query: URLSearchParams } {
  let rest = target;
  const absolute = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i.exec(rest);
  if (absolute) rest = rest.slice(absolute[0].length);
  const hash = rest.indexOf('#');
  if (hash >= 0) rest = rest.slice(0, hash);
  const question = rest.indexOf('?');
  const path = question >= 0 ? rest.slice(0, question) : rest;
  return { path, query: new URLSearchParams(question >= 0 ? rest.slice(question + 1) : '') };
}

function hasBody(req: IncomingRequest): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * Routes requests inside one target. Paths are matched after the Hub's service prefix when
 * present, so the same handler serves `/services/kbatch/jobs/` through the Hub and `/jobs/` when
 * called directly (Knative, tests). Every outcome, thrown or rejected, is answered here.
 */
export function createRouter(prefix: string, routes: RouteDefinition[]): RequestListener {
  const table: Route[] = routes.map((r) => ({
    method: r.method,
    segments: splitPath(r.path),
    handler: r.handler,
    pattern: `/${splitPath(r.path).join('/')}`,
  }));
  const prefixSegments = splitPath(prefix);

  async function route(req: IncomingRequest, res: ServerResponse, signal: AbortSignal): Promise<void> {
    const { path, query } = parseTarget(req.originalUrl ?? req.url ?? '/');
    let segments = splitPath(path);
    if (prefixSegments.length && prefixSegments.every((s, i) => segments[i] === s)) segments = segments.slice(prefixSegments.length);
    const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
    let allowed = false;
    for (const candidate of table) {
      const params = match(candidate, segments);
      if (!params) continue;
      if (candidate.method !== method) {
        allowed = true;
        continue;
      }
      noteRequest(res, { route: candidate.pattern, job: /\/jobs\/:name(\/|$)/.test(candidate.pattern) ? params.name : undefined });
      // Refused from the headers alone, before any handler could be tempted to inflate a body.
      if (hasBody(req)) assertIdentityEncoding(req);
      const ctx: RequestContext = { req, res, params, query, signal };
      await sendReply(ctx, await candidate.handler(ctx));
      return;
    }
    const shown = path.slice(0, 200);
    if (allowed) throw new MethodNotAllowed(`Method ${req.method} not allowed on ${shown}`);
    throw new NotFound(`No route for ${req.method} ${shown}`, 'NoRoute');
  }

  return function handle(req: IncomingRequest, res: ServerResponse): Promise<void> {
    beginRequest(req, res);
    const controller = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) controller.abort();
    });
    const fail = (error: unknown) => sendError(res, error);
    return requestScope.run({ req, res, fail }, async () => {
      try {
        await route(req, res, controller.signal);
      } catch (error) {
        fail(error);
      }
    });
  };
}

export function queryFlag(query: URLSearchParams, name: string): boolean {
  const value = query.get(name);
  if (value === null) return false;
  return ['1', 'true', 'yes', 'on', ''].includes(value.toLowerCase());
}

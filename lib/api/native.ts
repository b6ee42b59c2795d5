import type { User } from '../auth/types.ts';
import { BadRequest } from '../http/errors.ts';
import { queryFlag, readJson, type Handler, type Reply, type RequestContext, type RouteDefinition } from '../http/router.ts';
import { parseJobSpec } from '../k8s/spec.ts';
import { isMultipart, parseMultipart } from '../uploads/multipart.ts';
import { jobDetail, jobSummary } from '../views.ts';
import type { Deps } from './deps.ts';
import { jobLogs } from './logs.ts';
import { checkOwnNamespace } from './namespace.ts';
import { listJobsPage, showJob, storeUpload, submitJob } from './operations.ts';
import { openApiDocument } from './openapi.ts';
import { streamedUpload, streamedUploadFormat } from './streamed-upload.ts';

/**
 * Wraps a handler that needs the caller: authentication, and the check that the caller's namespace
 * is not someone else's, happen before any parsing or other Kubernetes call, for every route.
 */
export function authenticated(deps: Deps, handler: (ctx: RequestContext, user: User) => Promise<Reply>): Handler {
  return async (ctx) => {
    const user = await deps.auth.authenticate(ctx.req.headers);
    await checkOwnNamespace(deps, user);
    return handler(ctx, user);
  };
}

function uploadLimits(deps: Deps) {
  return { maxBytes: deps.settings.maxUploadBytes, maxFiles: deps.settings.maxUploadFiles };
}

function parseSince(ctx: RequestContext): string | undefined {
  const since = ctx.query.get('since') ?? ctx.query.get('sinceTime');
  if (!since) return undefined;
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(since) || Number.isNaN(Date.parse(since))) {
    throw new BadRequest('since: must be an RFC 3339 timestamp, e.g. 2026-11-25T10:00:00Z', 'since');
  }
  // Passed on verbatim: Kubernetes log timestamps have nanoseconds, and rounding would repeat lines.
  return since;
}

function parseLimit(ctx: RequestContext): number {
  const raw = ctx.query.get('limit');
  if (raw === null) return 50;
  const limit = Number(raw);
  if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw new BadRequest('limit: must be an integer between 1 and 500', 'limit');
  return limit;
}

export function uploadRoutes(deps: Deps): RouteDefinition[] {
  return [
    {
      method: 'POST',
      path: '/api/v1/uploads',
      handler: authenticated(deps, async (ctx, user) => {
        const streamed = streamedUploadFormat(ctx.req);
        if (streamed) return streamedUpload(deps, user, ctx.req, streamed);
        if (!isMultipart(ctx.req)) throw new BadRequest('Send the code as multipart/form-data (an "archive" part, or one part per file), or the archive itself as application/x-tar or application/gzip');
        const { entries } = await parseMultipart(ctx.req, uploadLimits(deps));
        const { reference, code, upload, expiresAt } = await storeUpload(deps, user, entries);
        return {
          status: 201,
          json: { upload: reference, files: upload.files, bytes: upload.bytes, archiveBytes: upload.archive.length, sha256: upload.sha256, storage: code.kind, expiresAt: expiresAt.toISOString() },
        };
      }),
    },
  ];
}

export function submitRoutes(deps: Deps): RouteDefinition[] {
  return [
    {
      method: 'POST',
      path: '/api/v1/jobs',
      handler: authenticated(deps, async (ctx, user) => {
        let specInput: unknown;
        let inline;
        if (isMultipart(ctx.req)) {
          const { fields, entries, fileParts } = await parseMultipart(ctx.req, uploadLimits(deps));
          if (!fields.spec) throw new BadRequest('spec: a multipart submit needs a "spec" field with the job spec as JSON', 'spec');
          try {
            specInput = JSON.parse(fields.spec);
          } catch {
            throw new BadRequest('spec: is not valid JSON', 'spec');
          }
          const spec = parseJobSpec(specInput);
          if (fileParts) inline = (await storeUpload(deps, user, entries)).code;
          const job = await submitJob(deps, user, spec, inline);
          return { status: 201, json: jobDetail(job, []) };
        }
        const spec = parseJobSpec(await readJson(ctx.req));
        const job = await submitJob(deps, user, spec);
        return { status: 201, json: jobDetail(job, []) };
      }),
    },
  ];
}

/** Served by every function, so each Knative Service has a readiness probe and the Hub a liveness check. */
export function healthRoutes(deps: Deps): RouteDefinition[] {
  return [
    { method: 'GET', path: '/', handler: async () => ({ json: { message: 'kbatch' } }) },
    { method: 'GET', path: '/healthz', handler: async () => ({ json: { ok: true, backend: deps.backend.kind } }) },
  ];
}

export function jobRoutes(deps: Deps): RouteDefinition[] {
  return [
    { method: 'GET', path: '/openapi.json', handler: async () => ({ json: openApiDocument(deps.settings.prefix) }) },
    { method: 'GET', path: '/profiles', handler: async () => ({ json: deps.admin.rawProfiles }) },
    {
      method: 'GET',
      path: '/authorized',
      handler: authenticated(deps, async (_ctx, user) => ({ json: { name: user.name, groups: user.groups, namespace: user.namespace } })),
    },
    {
      method: 'GET',
      path: '/api/v1/jobs',
      handler: authenticated(deps, async (ctx, user) => {
        const page = await listJobsPage(deps, user, parseLimit(ctx), ctx.query.get('continue') ?? undefined);
        return { json: { items: page.items.map((job) => jobSummary(job)), continue: page.continueToken ?? null } };
      }),
    },
    {
      method: 'GET',
      path: '/api/v1/jobs/:name',
      handler: authenticated(deps, async (ctx, user) => ({ json: await showJob(deps, user, ctx.params.name!) })),
    },
    {
      method: 'DELETE',
      path: '/api/v1/jobs/:name',
      handler: authenticated(deps, async (ctx, user) => {
        const job = await deps.backend.deleteJob(user.namespace, ctx.params.name!);
        return { json: { deleted: job.metadata?.name, propagation: 'Foreground' } };
      }),
    },
    {
      method: 'GET',
      path: '/api/v1/jobs/:name/logs',
      handler: authenticated(deps, async (ctx, user) => {
        const tail = ctx.query.get('tail');
        const stream = await jobLogs(deps, user, ctx.params.name!, {
          pod: ctx.query.get('pod') ?? undefined,
          follow: queryFlag(ctx.query, 'follow'),
          sinceTime: parseSince(ctx),
          timestamps: queryFlag(ctx.query, 'timestamps'),
          tailLines: tail ? Number(tail) : undefined,
        }, ctx.signal);
        return { stream };
      }),
    },
  ];
}

import type { User } from '../auth/types.ts';
import { deleteOutputsQuery } from '../contract.ts';
import { BadRequest, Forbidden } from '../http/errors.ts';
import { isMultipart, queryFlag, readJson, type Handler, type Reply, type RequestContext, type RouteDefinition } from '../http/router.ts';
import { JobDetailSchema, JobSpecSchema, UploadSchema } from '../jobs/schemas.ts';
import { parseJobSpec } from '../jobs/spec.ts';
import { jobDetail, jobSummary } from '../jobs/views.ts';
import { createReadiness } from '../observability/health.ts';
import { openLogStreams, registry, uploadBytes } from '../observability/metrics.ts';
import { noteRequest } from '../observability/request-log.ts';
import { codeFromMultipart } from '../uploads/code.ts';
import { withMultipart } from '../uploads/multipart.ts';
import type { Deps } from './deps.ts';
import { jobLogs } from './logs.ts';
import { checkOwnNamespace } from './namespace.ts';
import { deleteJobAndOutputs } from './outputs.ts';
import { idempotencyKeyFrom, listJobsPage, showJob, storedUploadReply, storeUpload, submitJob } from './operations.ts';
import { streamedUpload, streamedUploadFormat } from './streamed-upload.ts';

/**
 * Wraps a handler that needs the caller: authentication, and the check that the caller's namespace
 * is not someone else's, happen before any parsing or other Kubernetes call, for every route.
 */
export function authenticated(deps: Deps, handler: (ctx: RequestContext, user: User) => Promise<Reply>): Handler {
  return async (ctx) => {
    const user = await deps.auth.authenticate(ctx.req.headers);
    noteRequest(ctx.res, { user: user.name });
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
      doc: {
        summary:
          'Upload code: multipart (one "archive" part with a zip/tar/tar.gz, or one part per file, filename = path), or a bare tar / tar.gz body streamed into the user volume',
        auth: true,
        body: {
          'multipart/form-data': { type: 'object' },
          'application/x-tar': { type: 'string', format: 'binary' },
          'application/gzip': { type: 'string', format: 'binary' },
        },
        responses: { 201: { description: 'Upload stored', schema: UploadSchema } },
        errors: [413],
      },
      handler: authenticated(deps, async (ctx, user) => {
        const streamed = streamedUploadFormat(ctx.req);
        if (streamed) return streamedUpload(deps, user, ctx.req, streamed);
        if (!isMultipart(ctx.req))
          throw new BadRequest(
            'Send the code as multipart/form-data (an "archive" part, or one part per file), or the archive itself as application/x-tar or application/gzip',
          );
        // Large parts wait on disk, not in memory, and are removed once the upload is stored.
        return withMultipart(ctx.req, uploadLimits(deps), async (multipart) => {
          const upload = codeFromMultipart(multipart, uploadLimits(deps));
          if (upload.kind === 'archive') uploadBytes.inc(upload.archive.length);
          return storedUploadReply(await storeUpload(deps, user, upload));
        });
      }),
    },
  ];
}

export function submitRoutes(deps: Deps): RouteDefinition[] {
  return [
    {
      method: 'POST',
      path: '/api/v1/jobs',
      doc: {
        summary: 'Submit a job (JSON JobSpec, or multipart with a "spec" field plus code parts)',
        auth: true,
        body: {
          'application/json': JobSpecSchema,
          'multipart/form-data': {
            type: 'object',
            required: ['spec'],
            properties: {
              spec: {
                type: 'string',
                description: 'The JobSpec as JSON (same schema)',
                contentMediaType: 'application/json',
                contentSchema: JobSpecSchema,
              },
            },
            additionalProperties: { type: 'string', format: 'binary', description: 'Code: an "archive" part, or one part per file' },
          },
        },
        responses: { 201: { description: 'Created', schema: JobDetailSchema } },
        errors: [409, 413, 422],
      },
      handler: authenticated(deps, async (ctx, user) => {
        const idempotencyKey = idempotencyKeyFrom(ctx.req.headers);
        if (isMultipart(ctx.req)) {
          return withMultipart(ctx.req, uploadLimits(deps), async (multipart) => {
            const { fields, fileParts } = multipart;
            if (!fields.spec) throw new BadRequest('spec: a multipart submit needs a "spec" field with the job spec as JSON', 'spec');
            let specInput: unknown;
            try {
              specInput = JSON.parse(fields.spec);
            } catch {
              throw new BadRequest('spec: is not valid JSON', 'spec');
            }
            const spec = parseJobSpec(specInput);
            // Checked here, stored only by the create, after every other check passed.
            const upload = fileParts ? codeFromMultipart(multipart, uploadLimits(deps)) : undefined;
            if (upload?.kind === 'archive') uploadBytes.inc(upload.archive.length);
            const job = await submitJob(deps, user, spec, { upload, idempotencyKey });
            noteRequest(ctx.res, { job: job.metadata?.name });
            return { status: 201, json: jobDetail(job, []) };
          });
        }
        const spec = parseJobSpec(await readJson(ctx.req));
        const job = await submitJob(deps, user, spec, { idempotencyKey });
        noteRequest(ctx.res, { job: job.metadata?.name });
        return { status: 201, json: jobDetail(job, []) };
      }),
    },
  ];
}

/**
 * Served by every function, unauthenticated: liveness (/healthz: the process answers, nothing
 * else asked), readiness (/readyz: the backend and the Hub are reachable, see
 * lib/observability/health.ts) and Prometheus metrics (/metrics: counts and latencies labelled by
 * route pattern, status and dependency, never a user, job name, path or token).
 */
export function healthRoutes(deps: Deps): RouteDefinition[] {
  const readiness = createReadiness(deps);
  return [
    {
      method: 'GET',
      path: '/',
      doc: { summary: 'Liveness', responses: { 200: '{"message": "kbatch"}' } },
      handler: async () => ({ json: { message: 'kbatch' } }),
    },
    {
      method: 'GET',
      path: '/healthz',
      doc: { summary: 'Liveness (depends on nothing)', responses: { 200: '{"ok": true, "backend": "kubernetes" or "local"}' } },
      handler: async () => ({ json: { ok: true, backend: deps.backend.kind } }),
    },
    {
      method: 'GET',
      path: '/readyz',
      doc: {
        summary: 'Readiness: the Kubernetes API (or the local data dir) and the Hub answer',
        responses: { 200: '{"ready": true, ...}', 503: 'not ready: which dependency failed' },
      },
      handler: async () => {
        const result = await readiness();
        return { status: result.ready ? 200 : 503, json: result };
      },
    },
    {
      method: 'GET',
      path: '/metrics',
      doc: { summary: 'Prometheus metrics (no user data)', responses: { 200: 'text exposition format' } },
      handler: async () => ({ text: await registry.metrics(), contentType: registry.contentType }),
    },
  ];
}

/** `?allUsers=true` is the admin view; it needs the admin scope on the caller's token, not just an admin account. */
function wantsAllUsers(deps: Deps, ctx: RequestContext, user: User): boolean {
  if (!queryFlag(ctx.query, 'allUsers')) return false;
  if (!user.scopes.includes(deps.settings.adminScope)) {
    throw new Forbidden(`Listing every user's jobs needs the Hub scope ${deps.settings.adminScope} on your token`);
  }
  return true;
}

export function jobRoutes(deps: Deps): RouteDefinition[] {
  return [
    {
      method: 'GET',
      path: '/profiles/',
      doc: { summary: 'Admin-defined job profiles', responses: { 200: 'profile name to settings' } },
      handler: async () => ({ json: deps.admin.rawProfiles }),
    },
    {
      method: 'GET',
      path: '/authorized',
      doc: { summary: 'Who am I', auth: true, responses: { 200: 'name, groups, namespace' } },
      handler: authenticated(deps, async (_ctx, user) => ({ json: { name: user.name, groups: user.groups, namespace: user.namespace } })),
    },
    {
      method: 'GET',
      path: '/api/v1/jobs',
      doc: {
        summary: 'List jobs, newest first',
        auth: true,
        query: {
          limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
          continue: { type: 'string' },
          allUsers: { type: 'boolean', description: "every user's jobs; needs the admin scope (KBATCH_ADMIN_SCOPE), else 403" },
        },
        responses: { 200: '{items: JobSummary[], continue: string|null}' },
      },
      handler: authenticated(deps, async (ctx, user) => {
        const allUsers = wantsAllUsers(deps, ctx, user);
        const page = await listJobsPage(deps, user, parseLimit(ctx), ctx.query.get('continue') ?? undefined, allUsers);
        return { json: { items: page.items.map((job) => jobSummary(job)), continue: page.continueToken ?? null } };
      }),
    },
    {
      method: 'GET',
      path: '/api/v1/jobs/:name',
      doc: {
        summary: 'Show a job with its pods, conditions and recent events',
        auth: true,
        query: {
          events: { type: 'boolean', default: true, description: 'false skips the events (one Kubernetes call less; for pollers)' },
        },
        responses: { 200: { description: 'JobDetail', schema: JobDetailSchema } },
      },
      handler: authenticated(deps, async (ctx, user) => ({
        json: await showJob(deps, user, ctx.params.name!, { events: ctx.query.get('events') !== 'false' }),
      })),
    },
    {
      method: 'DELETE',
      path: '/api/v1/jobs/:name',
      doc: {
        summary: 'Delete a job (foreground: pods first, then owned Secret/ConfigMap); its outputs stay unless outputs=true',
        auth: true,
        query: {
          [deleteOutputsQuery]: {
            type: 'boolean',
            description: 'remove the outputs too; works after the Job is gone (404 only if neither exists)',
          },
        },
        responses: { 200: '{deleted, propagation} (with outputs=true also {job: name or null, outputs: files removed})' },
      },
      handler: authenticated(deps, async (ctx, user) => {
        if (queryFlag(ctx.query, deleteOutputsQuery)) return { json: await deleteJobAndOutputs(deps, user, ctx.params.name!) };
        const job = await deps.backend.deleteJob(user.namespace, ctx.params.name!);
        return { json: { deleted: job.metadata?.name, propagation: 'Foreground' } };
      }),
    },
    {
      method: 'GET',
      path: '/api/v1/jobs/:name/logs',
      doc: {
        summary: 'Job logs as text; follow streams until the pods finish',
        auth: true,
        query: {
          follow: { type: 'boolean' },
          pod: { type: 'string' },
          since: { type: 'string', format: 'date-time', description: 'Resume after this time' },
          timestamps: { type: 'boolean' },
          tail: { type: 'integer' },
        },
        responses: { 200: 'text/plain log lines' },
      },
      handler: authenticated(deps, async (ctx, user) => {
        const tail = ctx.query.get('tail');
        const stream = await jobLogs(
          deps,
          user,
          ctx.params.name!,
          {
            pod: ctx.query.get('pod') ?? undefined,
            follow: queryFlag(ctx.query, 'follow'),
            sinceTime: parseSince(ctx),
            timestamps: queryFlag(ctx.query, 'timestamps'),
            tailLines: tail ? Number(tail) : undefined,
          },
          ctx.signal,
        );
        openLogStreams.inc();
        ctx.res.once('close', () => openLogStreams.dec());
        return { stream };
      }),
    },
  ];
}

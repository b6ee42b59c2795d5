import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import type { User } from '../auth/types.ts';
import type { OutputList } from '../contract.ts';
import { NotFound } from '../http/errors.ts';
import type { RequestContext, RouteDefinition } from '../http/router.ts';
import { outputFilePath, parseRange } from '../jobs/outputs.ts';
import type { Deps } from './deps.ts';
import { authenticated } from './native.ts';

/**
 * Job outputs (issue 7 part 2): what a job wrote to $KBATCH_OUTPUTS_DIR, listed, downloaded (with
 * ranges), archived and deleted. Always in the caller's own namespace and volume, by job name, so
 * another user's job name finds nothing; they work after the Job is gone (its TTL) until deleted
 * or swept (KBATCH_OUTPUTS_RETENTION_SECONDS). The backends do the I/O (Backend.listOutputs...).
 */

const OutputListSchema = {
  type: 'object',
  required: ['job', 'files', 'totalBytes'],
  properties: {
    job: { type: 'string' },
    files: {
      type: 'array',
      items: {
        type: 'object',
        required: ['path', 'size', 'modified'],
        properties: {
          path: { type: 'string', description: 'relative to the outputs, "/"-separated' },
          size: { type: 'integer' },
          modified: { type: 'string', format: 'date-time' },
        },
      },
    },
    totalBytes: { type: 'integer' },
  },
};

/** An empty tar.gz: the archive of a job that exists but wrote nothing (yet). */
const emptyArchive = gzipSync(Buffer.alloc(1024));

/**
 * Whether the caller has a job of this name now. Asked only when there are no outputs, to tell
 * "nothing written yet" (an empty answer) from "no such job" (404). A namespace that does not
 * exist holds neither: no call is made for it.
 */
async function jobExists(deps: Deps, user: User, name: string): Promise<boolean> {
  if ((await deps.backend.namespaceOwner(user.namespace)) === undefined) return false;
  return deps.backend.getJob(user.namespace, name).then(
    () => true,
    (error: unknown) => {
      if (error instanceof NotFound || (error as { code?: unknown }).code === 404) return false;
      throw error;
    },
  );
}

function noSuchJob(name: string): NotFound {
  return new NotFound(`job ${name} not found, and it left no outputs`);
}

/** A namespace that does not exist has no volume: nothing to look in (and no helper pod to start there). */
async function hasNamespace(deps: Deps, user: User): Promise<boolean> {
  return (await deps.backend.namespaceOwner(user.namespace)) !== undefined;
}

export async function listOutputs(deps: Deps, user: User, name: string): Promise<OutputList> {
  if (!(await hasNamespace(deps, user))) throw noSuchJob(name);
  const files = await deps.backend.listOutputs(user, name);
  if (!files && !(await jobExists(deps, user, name))) throw noSuchJob(name);
  return { job: name, files: files ?? [], totalBytes: (files ?? []).reduce((sum, file) => sum + file.size, 0) };
}

/** Removes the outputs; `undefined` when there were none (and then the caller decides whether that is a 404). */
export async function deleteOutputs(deps: Deps, user: User, name: string): Promise<number | undefined> {
  if (!(await hasNamespace(deps, user))) return undefined;
  return deps.backend.deleteOutputs(user, name);
}

/**
 * DELETE job `?outputs=true`: the Job (if it still exists: its TTL may have removed it) and its
 * outputs. A 404 only when neither existed.
 */
export async function deleteJobAndOutputs(deps: Deps, user: User, name: string) {
  const job = await deps.backend.deleteJob(user.namespace, name).then(
    (deleted) => deleted,
    (error: unknown) => {
      if (error instanceof NotFound || (error as { code?: unknown }).code === 404) return undefined;
      throw error;
    },
  );
  const files = await deleteOutputs(deps, user, name);
  if (!job && files === undefined) throw noSuchJob(name);
  return { deleted: name, propagation: 'Foreground', job: job ? name : null, outputs: files ?? 0 };
}

/** `attachment; filename=...`, with an ASCII fallback and the exact name in RFC 5987 form. */
function attachment(filename: string): string {
  const ascii = filename.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(filename)}`;
}

async function fileReply(deps: Deps, ctx: RequestContext, user: User) {
  const name = ctx.params.name!;
  const path = outputFilePath(ctx.query.get('path'));
  if (!(await hasNamespace(deps, user))) throw new NotFound(`output ${JSON.stringify(path)} not found`);
  const read = await deps.backend.readOutput(user, name, path, parseRange(ctx.req.headers.range), ctx.signal);
  const length = read.range ? read.range.end - read.range.start + 1 : read.size;
  const headers: Record<string, string> = {
    'content-length': String(length),
    'accept-ranges': 'bytes',
    'content-disposition': attachment(path.slice(path.lastIndexOf('/') + 1)),
  };
  if (read.range) headers['content-range'] = `bytes ${read.range.start}-${read.range.end}/${read.size}`;
  let stream = read.stream;
  if (ctx.req.method === 'HEAD') {
    // The headers say it all; do not read the file for a body nobody gets.
    stream.destroy();
    stream = Readable.from([]);
  }
  return { status: read.range ? 206 : 200, stream, contentType: 'application/octet-stream', headers };
}

async function archiveReply(deps: Deps, ctx: RequestContext, user: User) {
  const name = ctx.params.name!;
  const headers = { 'content-disposition': attachment(`${name}-outputs.tar.gz`) };
  let stream: Readable;
  try {
    if (!(await hasNamespace(deps, user))) throw noSuchJob(name);
    stream = await deps.backend.archiveOutputs(user, name, ctx.signal);
  } catch (error) {
    if (!(error instanceof NotFound) || !(await jobExists(deps, user, name))) throw error instanceof NotFound ? noSuchJob(name) : error;
    stream = Readable.from([emptyArchive]);
  }
  return { stream, contentType: 'application/gzip', headers };
}

export function outputRoutes(deps: Deps): RouteDefinition[] {
  return [
    {
      method: 'GET',
      path: '/api/v1/jobs/:name/outputs',
      doc: {
        summary: 'The files a job wrote to $KBATCH_OUTPUTS_DIR (kept after the Job is deleted), sorted by path',
        auth: true,
        responses: { 200: { description: 'OutputList', schema: OutputListSchema } },
      },
      handler: authenticated(deps, async (ctx, user) => ({ json: await listOutputs(deps, user, ctx.params.name!) })),
    },
    {
      method: 'DELETE',
      path: '/api/v1/jobs/:name/outputs',
      doc: {
        summary: "Delete a job's outputs",
        auth: true,
        responses: { 200: '{job, deleted: number of files removed}' },
      },
      handler: authenticated(deps, async (ctx, user) => {
        const name = ctx.params.name!;
        const files = await deleteOutputs(deps, user, name);
        if (files === undefined && !(await jobExists(deps, user, name))) throw noSuchJob(name);
        return { json: { job: name, deleted: files ?? 0 } };
      }),
    },
    {
      method: 'GET',
      path: '/api/v1/jobs/:name/outputs/file',
      doc: {
        summary: 'One output file (Range: bytes=a-b, a- or -n answers 206 with Content-Range)',
        auth: true,
        query: { path: { type: 'string', description: 'relative to the job outputs, as listed' } },
        responses: { 200: 'the bytes (application/octet-stream)', 206: 'the requested range' },
        errors: [416],
      },
      handler: authenticated(deps, (ctx, user) => fileReply(deps, ctx, user)),
    },
    {
      method: 'GET',
      path: '/api/v1/jobs/:name/outputs/archive',
      doc: {
        summary: "All of a job's outputs as one tar.gz (symlinks stored as links)",
        auth: true,
        responses: { 200: 'application/gzip, attachment NAME-outputs.tar.gz' },
      },
      handler: authenticated(deps, (ctx, user) => archiveReply(deps, ctx, user)),
    },
  ];
}

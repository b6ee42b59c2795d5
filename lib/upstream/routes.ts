import { pipeline, Transform, type Readable } from 'node:stream';
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import type { User } from '../auth/types.ts';
import { BadRequest, toHttpError } from '../http/errors.ts';
import { queryFlag, type Reply, type RouteDefinition } from '../http/router.ts';
import { UpstreamCronJobBodySchema, UpstreamJobBodySchema } from '../jobs/schemas.ts';
import { expectObject } from '../jobs/spec.ts';
import { toUpstreamWire } from '../k8s/wire.ts';
import { listZip } from '../uploads/archive.ts';
import { codeFromEntries } from '../uploads/code.ts';
import type { Spool } from '../uploads/spool.ts';
import { isSpooledCode, withUpstreamBody } from './streaming-body.ts';
import type { Deps } from '../api/deps.ts';
import { jobLogs } from '../api/logs.ts';
import { idempotencyKeyFrom, listAllJobs, submitCronJob, submitJob, uploadLimitsOf } from '../api/operations.ts';
import { authenticated } from '../api/native.ts';
import { inManifestTerms, specFromUpstreamCronJob, specFromUpstreamManifest } from './manifest.ts';

/**
 * The API of upstream kbatch-proxy, so the unmodified Python `kbatch` CLI works against this
 * server: Python-client `to_dict()` bodies (snake_case, `+00:00` times) and `{"detail": ...}` errors.
 */

const jobStatusKeys = ['active', 'failed', 'ready', 'succeeded', 'startTime', 'completionTime', 'conditions'] as const;

/** The CLI indexes `status.ready` and friends directly, so they must exist even when Kubernetes omits them. */
function withStatusKeys(job: V1Job): V1Job {
  const status: Record<string, unknown> = { ...job.status };
  for (const key of jobStatusKeys) if (status[key] === undefined) status[key] = null;
  return { ...job, status: status as V1Job['status'] };
}

/**
 * `kbatch job list` renders a duration with `fromisoformat(status.start_time)` (and `completion_time`
 * once succeeded, and iterates `conditions` once failed), so a null there crashes the whole table:
 * a job not yet started (just submitted, or suspended) or one whose success is recorded before its
 * completion time. The list fills those from the nearest honest timestamp instead; `show` is untouched.
 */
function withListableTimes(job: V1Job): V1Job {
  const status = { ...job.status };
  const conditions = status.conditions ?? [];
  status.startTime ??= job.metadata?.creationTimestamp;
  if (status.succeeded && !status.completionTime) {
    const done = conditions.find((c) => c.status === 'True' && (c.type === 'Complete' || c.type === 'SuccessCriteriaMet'));
    status.completionTime = done?.lastTransitionTime ?? status.startTime;
  }
  if (status.failed) status.conditions = conditions;
  return { ...job, status };
}

/** A V1Status as upstream's delete returns, without its quirk of a Job squeezed into a Status. */
function deletedStatus(kind: 'jobs' | 'cronjobs', name: string | undefined, uid: string | undefined) {
  return toUpstreamWire({
    apiVersion: 'v1',
    kind: 'Status',
    status: 'Success',
    code: 200,
    message: `${kind === 'jobs' ? 'job' : 'cronjob'} ${name} deleted (foreground: ${kind === 'jobs' ? 'its pods' : 'its jobs and their pods'} are removed first)`,
    reason: null,
    details: { name, group: 'batch', kind, uid },
    metadata: {},
  });
}

function listBody(kind: string, apiVersion: string, items: unknown[]) {
  return toUpstreamWire({
    apiVersion,
    kind,
    items,
    metadata: { continue: null, remainingItemCount: null, resourceVersion: null, selfLink: null },
  });
}

/**
 * Upstream sends each log line as one chunk without its newline; its CLI prints each chunk it reads
 * plus a newline, so the chunk boundaries are the protocol: one write per line. (Corking the reply to
 * batch them is no way out: Node joins corked writes into one HTTP chunk.)
 */
function upstreamLineChunks(): Transform {
  let carry = '';
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      const lines = (carry + chunk.toString('utf8')).split('\n');
      carry = lines.pop() ?? '';
      for (const line of lines) if (line) this.push(line);
      callback();
    },
    flush(callback) {
      if (carry) this.push(carry);
      callback();
    },
  });
}

/** A fetched log is streamed as it comes (upstream buffered it whole): the CLI reads the body to its end either way. */
function logsReply(stream: Readable, follow: boolean): Reply {
  if (!follow) return { stream };
  // pipeline, not pipe: an error of the pod stream reaches the reply, and a reply torn down closes the pod stream.
  const lines = upstreamLineChunks();
  pipeline(stream, lines, () => undefined);
  return { stream: lines };
}

/**
 * `jobs/logs/NAME`: a job's logs. The 0.4.2 CLI's `kbatch pod logs POD` (still the newest stable
 * release) sends a pod name here, as kbatch-proxy 0.4.2 read it; so when the caller has no Job of
 * that name but has a Pod of it, that pod's log is served. A job name always wins.
 */
async function jobOrPodLogs(deps: Deps, user: User, name: string, follow: boolean, signal: AbortSignal) {
  const missing = (error: unknown) => {
    if (toHttpError(error).status === 404) return undefined;
    throw error;
  };
  const job = await deps.backend.getJob(user.namespace, name).catch(missing);
  const pod = job ? undefined : await deps.backend.getPod(user.namespace, name).catch(missing);
  if (pod) return deps.backend.podLogs(user.namespace, name, { follow }, signal);
  return jobLogs(deps, user, name, { follow }, signal);
}

/**
 * Upstream sends code as a ConfigMap dict whose `binary_data.code` is a base64 zip; the body reader
 * (./streaming-body.ts) has already decoded that string into the spool, and the zip is read there
 * with positioned reads. Checked here, stored by the create.
 */
function inlineCodeFrom(deps: Deps, code: unknown, spool: Spool) {
  if (code === null || code === undefined) return undefined;
  const configMap = expectObject(code, 'code');
  const binary = (configMap.binary_data ?? configMap.binaryData) as Record<string, unknown> | undefined;
  const zip = binary?.code;
  if (!isSpooledCode(zip)) throw new BadRequest('code.binary_data.code: must hold the base64 zip of the code', 'code.binary_data.code');
  const limits = uploadLimitsOf(deps);
  return codeFromEntries(listZip(spool.access(zip.path, zip.size), limits), limits, zip.sha256);
}

export function upstreamSubmitRoutes(deps: Deps): RouteDefinition[] {
  return [
    {
      method: 'POST',
      path: '/jobs/',
      doc: {
        summary: 'Upstream kbatch-proxy: submit {job: V1Job, code?: V1ConfigMap with a base64 zip}',
        auth: true,
        body: { 'application/json': UpstreamJobBodySchema },
        responses: { 200: 'created V1Job' },
      },
      handler: authenticated(deps, async (ctx, user) => {
        const idempotencyKey = idempotencyKeyFrom(ctx.req.headers);
        return withUpstreamBody(ctx.req, { maxCodeBytes: deps.settings.maxUploadBytes }, async (raw, spool) => {
          const body = expectObject(raw, 'body');
          const spec = specFromUpstreamManifest(body.job);
          const upload = inlineCodeFrom(deps, body.code, spool);
          const job = await submitJob(deps, user, spec, { upload, idempotencyKey }).catch((error: unknown) => {
            throw inManifestTerms(error, 'job');
          });
          return { json: toUpstreamWire(withStatusKeys(job)) };
        });
      }),
    },
    {
      method: 'POST',
      path: '/cronjobs/',
      doc: {
        summary: 'Upstream: submit {job: V1CronJob, code?}; 501 on the local backend',
        auth: true,
        body: { 'application/json': UpstreamCronJobBodySchema },
        responses: { 200: 'created V1CronJob' },
        errors: [501],
      },
      handler: authenticated(deps, async (ctx, user) => {
        const idempotencyKey = idempotencyKeyFrom(ctx.req.headers);
        return withUpstreamBody(ctx.req, { maxCodeBytes: deps.settings.maxUploadBytes }, async (raw, spool) => {
          const body = expectObject(raw, 'body');
          const { spec, schedule } = specFromUpstreamCronJob(body.job);
          const upload = inlineCodeFrom(deps, body.code, spool);
          const cronJob = await submitCronJob(deps, user, spec, schedule, { upload, idempotencyKey }).catch((error: unknown) => {
            throw inManifestTerms(error, 'cronjob');
          });
          return { json: toUpstreamWire(cronJob) };
        });
      }),
    },
  ];
}

export function upstreamJobRoutes(deps: Deps): RouteDefinition[] {
  return [
    {
      method: 'GET',
      path: '/jobs/',
      doc: { summary: 'Upstream kbatch-proxy: list jobs (V1JobList, snake_case)', auth: true, responses: { 200: 'JobList' } },
      handler: authenticated(deps, async (_ctx, user) => {
        const jobs = (await listAllJobs(deps, user)).reverse();
        return {
          json: listBody(
            'JobList',
            'batch/v1',
            jobs.map((job) => withStatusKeys(withListableTimes(job))),
          ),
        };
      }),
    },
    {
      method: 'GET',
      path: '/jobs/:name',
      doc: { summary: 'Upstream: show job', auth: true, responses: { 200: 'V1Job' } },
      handler: authenticated(deps, async (ctx, user) => ({
        json: toUpstreamWire(withStatusKeys(await deps.backend.getJob(user.namespace, ctx.params.name!))),
      })),
    },
    {
      method: 'DELETE',
      path: '/jobs/:name',
      doc: { summary: 'Upstream: delete job', auth: true, responses: { 200: 'V1Status' } },
      handler: authenticated(deps, async (ctx, user) => {
        const job = await deps.backend.deleteJob(user.namespace, ctx.params.name!);
        return { json: deletedStatus('jobs', job.metadata?.name, job.metadata?.uid) };
      }),
    },
    {
      method: 'GET',
      path: '/jobs/logs/:name/',
      doc: { summary: 'Upstream: job logs (?stream=true follows)', auth: true, responses: { 200: 'text' } },
      handler: authenticated(deps, async (ctx, user) => {
        const follow = queryFlag(ctx.query, 'stream');
        return logsReply(await jobOrPodLogs(deps, user, ctx.params.name!, follow, ctx.signal), follow);
      }),
    },
    {
      method: 'GET',
      path: '/pods/',
      doc: { summary: 'Upstream: list pods (?job_name=)', auth: true, responses: { 200: 'PodList' } },
      handler: authenticated(deps, async (ctx, user) => {
        const jobName = ctx.query.get('job_name');
        const pods: V1Pod[] = await deps.backend.listPods(user.namespace, jobName ? { jobName } : {});
        return { json: listBody('PodList', 'v1', pods) };
      }),
    },
    {
      method: 'GET',
      path: '/pods/:name',
      doc: { summary: 'Upstream: show pod', auth: true, responses: { 200: 'V1Pod' } },
      handler: authenticated(deps, async (ctx, user) => ({
        json: toUpstreamWire(await deps.backend.getPod(user.namespace, ctx.params.name!)),
      })),
    },
    {
      method: 'GET',
      path: '/pods/logs/:name/',
      doc: { summary: 'Upstream: pod logs (?stream=true follows)', auth: true, responses: { 200: 'text' } },
      handler: authenticated(deps, async (ctx, user) => {
        const follow = queryFlag(ctx.query, 'stream');
        const stream = await deps.backend.podLogs(user.namespace, ctx.params.name!, { follow }, ctx.signal);
        return logsReply(stream, follow);
      }),
    },
    {
      method: 'GET',
      path: '/cronjobs/',
      doc: { summary: 'Upstream: list cronjobs', auth: true, responses: { 200: 'CronJobList' } },
      handler: authenticated(deps, async (_ctx, user) => ({
        json: listBody('CronJobList', 'batch/v1', await deps.backend.listCronJobs(user.namespace)),
      })),
    },
    {
      method: 'GET',
      path: '/cronjobs/:name',
      doc: { summary: 'Upstream: show cronjob', auth: true, responses: { 200: 'V1CronJob' } },
      handler: authenticated(deps, async (ctx, user) => ({
        json: toUpstreamWire(await deps.backend.getCronJob(user.namespace, ctx.params.name!)),
      })),
    },
    {
      method: 'DELETE',
      path: '/cronjobs/:name',
      doc: { summary: 'Upstream: delete cronjob (foreground: its jobs and pods first)', auth: true, responses: { 200: 'V1Status' } },
      handler: authenticated(deps, async (ctx, user) => {
        const cronJob = await deps.backend.deleteCronJob(user.namespace, ctx.params.name!);
        return { json: deletedStatus('cronjobs', cronJob.metadata?.name, cronJob.metadata?.uid) };
      }),
    },
  ];
}

import { once } from 'node:events';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import type { User } from '../auth/types.ts';
import type { LogOptions } from '../backend/types.ts';
import { NotFound } from '../http/errors.ts';
import { labels } from '../k8s/names.ts';
import { jobState } from '../jobs/views.ts';
import type { Deps } from './deps.ts';

export interface JobLogRequest {
  pod?: string;
  follow: boolean;
  sinceTime?: string;
  timestamps?: boolean;
  tailLines?: number;
}

/**
 * A follower waiting for pods re-reads them at first every half poll interval, then ever less
 * often while nothing changes, up to this many poll intervals apart: a job that sits pending (or
 * an array whose pods all stream) costs a few reads a minute, not two a second.
 */
const maxQuietPolls = 4;

/** After its pods' logs end, a follow waits at most this many 300 ms checks for the job's final state. */
const settleChecks = 30;

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });

function podHasStarted(pod: V1Pod): boolean {
  return pod.status?.phase !== 'Pending' || Boolean(pod.status?.containerStatuses?.some((s) => s.state?.running || s.state?.terminated));
}

/** The container whose log is the job's: the pod is in hand, so the backend need not read it again. */
function logOptionsFor(pod: V1Pod, options: LogOptions): LogOptions {
  const container = pod.spec?.containers[0]?.name;
  return container ? { ...options, container } : options;
}

/** What a poll compares to decide whether anything changed: each pod and its phase. */
const podsFingerprint = (pods: V1Pod[]) =>
  pods
    .map((p) => `${p.metadata?.name}:${p.status?.phase}:${podHasStarted(p)}`)
    .sort()
    .join(',');

/**
 * A job that can have several pods (an array, or retries) gets each line prefixed with its pod.
 * Decided from the spec, not from the pods seen so far, so a resumed stream is prefixed the same way.
 */
export function jobIsPrefixed(job: V1Job): boolean {
  return (job.spec?.completions ?? 1) > 1 || (job.spec?.parallelism ?? 1) > 1 || (job.spec?.backoffLimit ?? 0) > 0;
}

/**
 * Logs of a job: one pod when asked (or when there is only one), else every pod, each line
 * prefixed with its pod. A follower waits for pods to start and the stream ends when they finish.
 * A fetched single unprefixed pod's log is the backend's stream itself, untouched.
 */
export async function jobLogs(deps: Deps, user: User, jobName: string, request: JobLogRequest, signal: AbortSignal): Promise<Readable> {
  const { namespace } = user;
  const { backend } = deps;
  const options: LogOptions = {
    follow: request.follow,
    sinceTime: request.sinceTime,
    timestamps: request.timestamps,
    tailLines: request.tailLines,
  };
  if (request.pod) {
    const [, pod] = await Promise.all([backend.getJob(namespace, jobName), backend.getPod(namespace, request.pod)]);
    if (pod.metadata?.labels?.[labels.jobName] !== jobName) throw new NotFound(`pod ${request.pod} does not belong to job ${jobName}`);
    return podLogsWhenStarted(deps, namespace, pod, logOptionsFor(pod, options), signal);
  }
  // Both reads at once: the job (it must exist, and its spec decides prefixing) and its pods.
  const [job, firstPods] = await Promise.all([backend.getJob(namespace, jobName), backend.listPods(namespace, { jobName })]);
  const prefixed = jobIsPrefixed(job);
  let pods = firstPods;
  if (!request.follow) {
    if (!pods.length)
      throw new NotFound(`No pods found for job ${jobName}${jobState(job) === 'pending' ? ' yet; it is still pending' : ''}`);
    if (pods.length === 1 && !prefixed)
      return backend.podLogs(namespace, pods[0]!.metadata!.name!, logOptionsFor(pods[0]!, options), signal);
  }
  const output = new PassThrough();
  void (async () => {
    const seen = new Set<string>();
    const failures = new Map<string, number>();
    const streams: Promise<void>[] = [];
    const pollMs = deps.settings.logPollSeconds * 500;
    let interval = pollMs;
    let fingerprint = podsFingerprint(pods);
    for (;;) {
      for (const pod of pods) {
        const name = pod.metadata!.name!;
        if (seen.has(name) || !podHasStarted(pod)) continue;
        let stream: Readable;
        try {
          stream = await backend.podLogs(namespace, name, logOptionsFor(pod, options), signal);
        } catch (error) {
          // A container between states can refuse its log for a moment: retry a few rounds, then say so.
          const count = (failures.get(name) ?? 0) + 1;
          failures.set(name, count);
          if (request.follow && count < 3) continue;
          output.write(`[kbatch] no logs for pod ${name}: ${(error as Error).message}\n`);
          seen.add(name);
          continue;
        }
        seen.add(name);
        streams.push(prefixed ? copyLines(stream, output, `[${name}] `) : copyStream(stream, output));
        if (!request.follow) await streams[streams.length - 1];
      }
      if (!request.follow || signal.aborted) break;
      // An unprefixed job has one pod at most: once it streams, its stream's end is the end.
      if (!prefixed && seen.size) break;
      const current = await backend.getJob(namespace, jobName).catch(() => undefined);
      const state = current ? jobState(current) : 'failed';
      if (state === 'succeeded' || state === 'failed') {
        pods = await backend.listPods(namespace, { jobName });
        if (pods.every((p) => seen.has(p.metadata!.name!) || !podHasStarted(p))) break;
        await sleep(500, signal);
        continue;
      }
      await sleep(interval, signal);
      pods = await backend.listPods(namespace, { jobName }).catch(() => pods);
      const next = podsFingerprint(pods);
      interval = next === fingerprint ? Math.min(interval * 2, pollMs * 2 * maxQuietPolls) : pollMs;
      fingerprint = next;
    }
    await Promise.all(streams);
    // The pods are done, but the Job controller records the job's end a moment later: a client that
    // reads the job's state right after the stream ends must see it final.
    // (Only after a log that streamed: a follow that ends on unreadable logs does not linger.)
    if (request.follow && streams.length && !signal.aborted) await jobSettled(deps, namespace, jobName, signal);
    output.end();
  })().catch((error: Error) => output.destroy(error));
  return output;
}

/** Waits (briefly) until the job's state is final. */
async function jobSettled(deps: Deps, namespace: string, jobName: string, signal: AbortSignal): Promise<void> {
  for (let i = 0; i < settleChecks && !signal.aborted; i++) {
    const job = await deps.backend.getJob(namespace, jobName).catch(() => undefined);
    const state = job ? jobState(job) : 'failed';
    if (state === 'succeeded' || state === 'failed') return;
    await sleep(300, signal);
  }
}

async function podLogsWhenStarted(deps: Deps, namespace: string, pod: V1Pod, options: LogOptions, signal: AbortSignal): Promise<Readable> {
  const name = pod.metadata!.name!;
  if (options.follow) {
    const pollMs = deps.settings.logPollSeconds * 500;
    let current = pod;
    for (let interval = pollMs; !signal.aborted && !podHasStarted(current); interval = Math.min(interval * 2, pollMs * 2 * maxQuietPolls)) {
      await sleep(interval, signal);
      current = await deps.backend.getPod(namespace, name);
    }
  }
  return deps.backend.podLogs(namespace, name, options, signal);
}

/** Waits until `target` takes more, or is gone (then the source is dropped). */
async function drained(target: Writable): Promise<boolean> {
  if (target.destroyed) return false;
  await Promise.race([once(target, 'drain'), once(target, 'close')]);
  return !target.destroyed;
}

/** A single pod's log, chunk for chunk, with backpressure. */
async function copyStream(source: Readable, target: PassThrough): Promise<void> {
  try {
    for await (const chunk of source) {
      if (!target.write(chunk) && !(await drained(target))) break;
    }
  } finally {
    source.destroy();
  }
}

/** Each line prefixed with its pod; a partial line waits for its end, or the end of the log. */
async function copyLines(source: Readable, target: PassThrough, prefix: string): Promise<void> {
  let carry = '';
  try {
    for await (const chunk of source) {
      const text = carry + (Buffer.isBuffer(chunk) ? chunk.toString('utf8') : String(chunk));
      const end = text.lastIndexOf('\n');
      if (end < 0) {
        carry = text;
        continue;
      }
      carry = text.slice(end + 1);
      const prefixed = prefix + text.slice(0, end).replaceAll('\n', `\n${prefix}`) + '\n';
      if (!target.write(prefixed) && !(await drained(target))) return;
    }
    if (carry) target.write(prefix + carry + '\n');
  } finally {
    source.destroy();
  }
}

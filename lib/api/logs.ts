import { PassThrough, type Readable } from 'node:stream';
import type { V1Pod } from '@kubernetes/client-node';
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

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });

function podHasStarted(pod: V1Pod): boolean {
  return pod.status?.phase !== 'Pending' || Boolean(pod.status?.containerStatuses?.some((s) => s.state?.running || s.state?.terminated));
}

/**
 * Logs of a job: one pod when asked (or when there is only one), else every pod, each line
 * prefixed with its pod. A follower waits for pods to start and the stream ends when they finish.
 */
export async function jobLogs(deps: Deps, user: User, jobName: string, request: JobLogRequest, signal: AbortSignal): Promise<Readable> {
  const { namespace } = user;
  const { backend } = deps;
  const job = await backend.getJob(namespace, jobName);
  const options: LogOptions = { follow: request.follow, sinceTime: request.sinceTime, timestamps: request.timestamps, tailLines: request.tailLines };
  if (request.pod) {
    const pod = await backend.getPod(namespace, request.pod);
    if (pod.metadata?.labels?.[labels.jobName] !== jobName) throw new NotFound(`pod ${request.pod} does not belong to job ${jobName}`);
    return podLogsWhenStarted(deps, namespace, request.pod, options, signal);
  }
  // A job that can have several pods (an array, or retries) gets each line prefixed with its pod.
  // Decided from the spec, not from the pods seen so far, so a resumed stream is prefixed the same way.
  const prefixed = (job.spec?.completions ?? 1) > 1 || (job.spec?.backoffLimit ?? 0) > 0;
  let pods = await backend.listPods(namespace, { jobName });
  if (!request.follow) {
    if (!pods.length) throw new NotFound(`No pods found for job ${jobName}${jobState(job) === 'pending' ? ' yet; it is still pending' : ''}`);
    if (pods.length === 1 && !prefixed) return backend.podLogs(namespace, pods[0]!.metadata!.name!, options, signal);
  }
  const output = new PassThrough();
  void (async () => {
    const seen = new Set<string>();
    const failures = new Map<string, number>();
    const streams: Promise<void>[] = [];
    for (;;) {
      for (const pod of pods) {
        const name = pod.metadata!.name!;
        if (seen.has(name) || !podHasStarted(pod)) continue;
        let stream: Readable;
        try {
          stream = await backend.podLogs(namespace, name, options, signal);
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
        streams.push(copyLines(stream, output, prefixed ? `[${name}] ` : ''));
        if (!request.follow) await streams[streams.length - 1];
      }
      if (!request.follow || signal.aborted) break;
      const current = await backend.getJob(namespace, jobName).catch(() => undefined);
      const state = current ? jobState(current) : 'failed';
      if (state === 'succeeded' || state === 'failed') {
        pods = await backend.listPods(namespace, { jobName });
        if (pods.every((p) => seen.has(p.metadata!.name!) || !podHasStarted(p))) break;
        await sleep(500, signal);
        continue;
      }
      await sleep(deps.settings.logPollSeconds * 500, signal);
      pods = await backend.listPods(namespace, { jobName }).catch(() => pods);
    }
    await Promise.all(streams);
    output.end();
  })().catch((error: Error) => output.destroy(error));
  return output;
}

async function podLogsWhenStarted(deps: Deps, namespace: string, pod: string, options: LogOptions, signal: AbortSignal): Promise<Readable> {
  if (options.follow) {
    while (!signal.aborted) {
      const current = await deps.backend.getPod(namespace, pod);
      if (podHasStarted(current)) break;
      await sleep(deps.settings.logPollSeconds * 500, signal);
    }
  }
  return deps.backend.podLogs(namespace, pod, options, signal);
}

async function copyLines(source: Readable, target: PassThrough, prefix: string): Promise<void> {
  let carry = '';
  for await (const chunk of source) {
    const text = carry + (Buffer.isBuffer(chunk) ? chunk.toString('utf8') : String(chunk));
    const lines = text.split('\n');
    carry = lines.pop() ?? '';
    if (lines.length) target.write(lines.map((line) => prefix + line + '\n').join(''));
  }
  if (carry) target.write(prefix + carry + '\n');
}

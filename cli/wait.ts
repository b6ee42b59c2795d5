import type { JobDetail, JobState } from '../lib/jobs/views.ts';
import type { KbatchApi } from './api.ts';
import { ApiError, CliError } from './errors.ts';
import { humanDuration } from './format.ts';
import { failureText, isTransient, Reconnects, type ReconnectOptions } from './retry.ts';

/** Waiting for a job to end, shared by `job wait`, `submit --wait` and log following. */

export const finalStates: JobState[] = ['succeeded', 'failed'];

/** True when the job is over, or gone (deleted while someone followed it). */
export async function jobFinished(api: KbatchApi, name: string): Promise<boolean> {
  try {
    return finalStates.includes((await api.getJob(name, { events: false })).state);
  } catch (error) {
    if (error instanceof ApiError && error.reason === 'NotFound') return true;
    throw error;
  }
}

export interface WaitOptions extends ReconnectOptions {
  timeoutSeconds?: number;
  intervalMs?: number;
  now?: () => number;
  /**
   * The server already answered this command (`submit --wait`): a failure on the first poll is
   * then worth retrying too. Otherwise only a wait that once got through retries, so a wrong URL
   * fails at once.
   */
  connected?: boolean;
  /** Each answer while the job runs, for a progress line. */
  onProgress?: (job: JobDetail) => void;
}

/**
 * Polls until the job succeeds or fails, riding out dropped connections, timeouts and 502/503/504
 * (a restart or a rolling update of the server) with bounded reconnects. A timeout is an error
 * naming the state the job was stuck in.
 */
export async function waitForJob(api: KbatchApi, name: string, options: WaitOptions = {}): Promise<JobDetail> {
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const now = options.now ?? Date.now;
  const reconnects = new Reconnects({ ...options, sleep });
  const deadline = options.timeoutSeconds === undefined ? undefined : now() + options.timeoutSeconds * 1000;
  let connected = options.connected ?? false;
  let interval = Math.min(500, options.intervalMs ?? 2000);
  let lastState: JobState | undefined;
  for (;;) {
    let failed = false;
    try {
      const job = await api.getJob(name, { events: false });
      connected = true;
      reconnects.succeeded();
      lastState = job.state;
      if (finalStates.includes(job.state)) return job;
      options.onProgress?.(job);
    } catch (error) {
      if (!connected || !isTransient(error)) throw error;
      const reason = failureText(error);
      failed = true;
      await reconnects.failed(
        reason,
        () =>
          new CliError(
            `lost contact with kbatch while waiting for job ${name} (${reason})`,
            1,
            `the job keeps running; resume with kbatch job wait ${name}`,
          ),
      );
    }
    if (deadline !== undefined && now() >= deadline) {
      throw new CliError(
        `timed out after ${humanDuration(options.timeoutSeconds)} waiting for job ${name}${lastState ? ` (still ${lastState})` : ''}`,
      );
    }
    // The reconnect backoff already waited.
    if (failed) continue;
    const wait = deadline === undefined ? interval : Math.max(0, Math.min(interval, deadline - now()));
    await sleep(wait);
    // Start quick for short jobs, then settle so a long wait does not hammer the API.
    interval = Math.min(options.intervalMs ?? 2000, interval * 2);
  }
}

/** One line on how a finished job ended, with the failure reason when there is one. */
export function outcome(job: JobDetail): string {
  const duration = job.durationSeconds !== undefined ? ` after ${humanDuration(job.durationSeconds)}` : '';
  if (job.state === 'succeeded') return `job ${job.name} succeeded${duration}`;
  const failed = job.conditions.find((c) => (c.type === 'Failed' || c.type === 'FailureTarget') && c.status === 'True');
  const exit = job.pods.flatMap((p) => p.containers).find((c) => c.state === 'terminated' && c.exitCode !== undefined && c.exitCode !== 0);
  const reasons = [failed?.reason, failed?.message, exit ? `exit code ${exit.exitCode}` : undefined].filter(Boolean);
  return `job ${job.name} ${job.state}${duration}${reasons.length ? `: ${reasons.join(': ')}` : ''}`;
}

/** `running · pods: 1 running, 0 succeeded, 0 failed of 3 · 12s`: where a job is, at a glance. */
export function progressLine(job: JobDetail, elapsedSeconds: number): string {
  const running = job.pods.filter((p) => p.phase === 'Running').length;
  const total = Math.max(job.completions, 1);
  return `job ${job.name}: ${job.state} · pods: ${running} running, ${job.succeeded} succeeded, ${job.failed} failed of ${total} · ${humanDuration(elapsedSeconds)}`;
}

import type { JobDetail, JobState, JobSummary } from '../lib/views.ts';
import type { ApiClient } from './client.ts';
import { ApiError, CliError } from './errors.ts';
import { humanDuration } from './format.ts';

/** The API calls behind the job commands, shared by `job wait`, `submit --wait` and log following. */

export const finalStates: JobState[] = ['succeeded', 'failed'];

export function jobPath(name: string): string {
  return `api/v1/jobs/${encodeURIComponent(name)}`;
}

export function getJob(client: ApiClient, name: string): Promise<JobDetail> {
  return client.json<JobDetail>('GET', jobPath(name), { what: `job ${name}` });
}

export interface JobPage {
  items: JobSummary[];
  continue: string | null;
}

export async function listJobs(client: ApiClient, options: { limit?: number; all: boolean }): Promise<JobPage> {
  const items: JobSummary[] = [];
  let token: string | undefined;
  for (;;) {
    const page = await client.json<JobPage>('GET', 'api/v1/jobs', { query: { limit: options.limit, continue: token } });
    items.push(...page.items);
    if (!options.all || !page.continue) return { items, continue: options.all ? null : page.continue };
    token = page.continue;
  }
}

/** True when the job is over, or gone (deleted while someone followed it). */
export async function jobFinished(client: ApiClient, name: string): Promise<boolean> {
  try {
    return finalStates.includes((await getJob(client, name)).state);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return true;
    throw error;
  }
}

export interface WaitOptions {
  timeoutSeconds?: number;
  intervalMs?: number;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

/** Polls until the job succeeds or fails; a timeout is an error naming the state it was stuck in. */
export async function waitForJob(client: ApiClient, name: string, options: WaitOptions = {}): Promise<JobDetail> {
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const now = options.now ?? Date.now;
  const deadline = options.timeoutSeconds === undefined ? undefined : now() + options.timeoutSeconds * 1000;
  let interval = Math.min(500, options.intervalMs ?? 2000);
  for (;;) {
    const job = await getJob(client, name);
    if (finalStates.includes(job.state)) return job;
    if (deadline !== undefined && now() >= deadline) {
      throw new CliError(`timed out after ${humanDuration(options.timeoutSeconds)} waiting for job ${name} (still ${job.state})`);
    }
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
  const exit = job.pods
    .flatMap((p) => p.containers)
    .find((c) => c.state === 'terminated' && c.exitCode !== undefined && c.exitCode !== 0);
  const reasons = [failed?.reason, failed?.message, exit ? `exit code ${exit.exitCode}` : undefined].filter(Boolean);
  return `job ${job.name} ${job.state}${duration}${reasons.length ? `: ${reasons.join(': ')}` : ''}`;
}

import type { JobState, JobSummary } from '../lib/jobs/views.ts';
import { UsageError } from './errors.ts';

/** Choosing jobs by state and label, as `kubectl get -l` and `argo list --status` do. Done here: the server lists, the CLI filters. */

export const jobStates: JobState[] = ['pending', 'running', 'succeeded', 'failed', 'suspended'];

/** `--state running,failed` (repeatable). */
export function parseStates(values: string[]): Set<JobState> | undefined {
  const words = values
    .flatMap((v) => v.split(','))
    .map((v) => v.trim().toLowerCase())
    .filter(Boolean);
  if (!words.length) return undefined;
  for (const word of words) {
    if (!(jobStates as string[]).includes(word)) throw new UsageError(`--state: "${word}" is not one of ${jobStates.join(', ')}`);
  }
  return new Set(words as JobState[]);
}

export type Requirement = { key: string; op: '=' | '!=' | 'exists' | '!exists'; value?: string };

/** `-l team=ml,tier!=dev,gpu,!spot`: kubectl's equality selector (all must hold). */
export function parseSelector(values: string[]): Requirement[] {
  const requirements: Requirement[] = [];
  for (const part of values
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter(Boolean)) {
    const match = /^(!?)([A-Za-z0-9][-A-Za-z0-9_./]*)(?:(!=|==|=)(.*))?$/.exec(part);
    if (!match || (match[1] && match[3]))
      throw new UsageError(`--selector: cannot read "${part}" (use key=value, key!=value, key or !key)`);
    const [, not, key, op, value] = match;
    if (!op) requirements.push({ key: key!, op: not ? '!exists' : 'exists' });
    else requirements.push({ key: key!, op: op === '!=' ? '!=' : '=', value: value ?? '' });
  }
  return requirements;
}

export function matchesSelector(labels: Record<string, string>, requirements: Requirement[]): boolean {
  return requirements.every(({ key, op, value }) => {
    const has = Object.hasOwn(labels, key);
    if (op === 'exists') return has;
    if (op === '!exists') return !has;
    if (op === '=') return has && labels[key] === value;
    return labels[key] !== value;
  });
}

export function filterJobs(jobs: JobSummary[], filter: { states?: Set<JobState>; selector?: Requirement[] }): JobSummary[] {
  return jobs.filter(
    (job) =>
      (!filter.states || filter.states.has(job.state)) && (!filter.selector?.length || matchesSelector(job.labels ?? {}, filter.selector)),
  );
}

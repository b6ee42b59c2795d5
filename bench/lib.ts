/** Small measuring tools for bench/run.ts: process CPU and memory from /proc, percentiles, concurrency. */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const clockTicksPerSecond = 100;

/** User + system CPU of a process so far, in milliseconds (Linux /proc/PID/stat, fields 14 and 15). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces; everything after its closing parenthesis is fixed.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicksPerSecond;
}

function statusField(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const match = new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? 0) / 1024;
}

export const rssMb = (pid: number) => statusField(pid, 'VmRSS');
export const peakRssMb = (pid: number) => statusField(pid, 'VmHWM');

/** Starts a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM to the current RSS). */
export function resetPeakRss(pid: number): void {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
  } catch {
    /* not permitted: the peak then covers the whole life of the process, which only overstates it */
  }
}

export function percentile(values: number[], p: number): number {
  if (!values.length) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export const median = (values: number[]) => percentile(values, 50);

/** Runs `task` `total` times with at most `concurrency` in flight; returns wall seconds and the errors seen. */
export async function concurrently(
  total: number,
  concurrency: number,
  task: (i: number) => Promise<void>,
): Promise<{ seconds: number; errors: string[] }> {
  const errors: string[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, total) }, async () => {
      while (next < total) {
        const i = next++;
        try {
          await task(i);
        } catch (error) {
          errors.push((error as Error).message);
        }
      }
    }),
  );
  return { seconds: (performance.now() - started) / 1000, errors };
}

/**
 * The image's memory settings (Dockerfile ENV: NODE_OPTIONS, MALLOC_*), so the bench and the test
 * stack run our server as production does (without them V8's young generation alone grows to 2 x 64 MB).
 */
export function deployedMemoryEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  const dockerfile = readFileSync(join(import.meta.dirname, '..', 'Dockerfile'), 'utf8');
  for (const [, line] of dockerfile.matchAll(/^ENV (.*)$/gm)) {
    for (const [, key, value] of line!.matchAll(/(\w+)=(\S+)/g)) if (/^(NODE_OPTIONS|MALLOC_\w+)$/.test(key!)) env[key!] = value!;
  }
  return env;
}

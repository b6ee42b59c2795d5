import { posix } from 'node:path';
import { BadRequest, RangeNotSatisfiable } from '../http/errors.ts';

/**
 * Job outputs (issue 7 part 2), the rules both backends share, with no I/O: where a job's outputs
 * live, which output path a request may name, which byte range it asks for, and which outputs the
 * retention sweep removes. A job writes to $KBATCH_OUTPUTS_DIR (/outputs on Kubernetes, the
 * user's volume at `outputs/<job>`); the files outlive the Job, until deleted or swept.
 */

/** The directory of a job's outputs, relative to the user's volume (Kubernetes) or namespace directory (local). */
export function outputsDirOf(job: string): string {
  return `outputs/${job}`;
}

/** The `path` query of an output file request: relative, inside the outputs, a file name (never the directory itself). */
export function outputFilePath(raw: string | null): string {
  if (raw === null || raw === '') throw new BadRequest('path: is required (a file path relative to the job outputs)', 'path');
  const shown = JSON.stringify(raw.slice(0, 200));
  // Control characters (newline, NUL) are refused too: the volume listing cannot show such names.
  if (/[\x00-\x1f\x7f]/.test(raw)) throw new BadRequest(`path: ${shown} contains a control character`, 'path');
  if (raw.startsWith('/')) throw new BadRequest(`path: ${shown} is absolute; give it relative to the job outputs`, 'path');
  if (raw.split('/').includes('..')) throw new BadRequest(`path: ${shown} may not contain ".."`, 'path');
  const normalized = posix.normalize(raw).replace(/\/+$/, '');
  if (normalized === '.' || normalized === '') throw new BadRequest('path: names the outputs directory, not a file', 'path');
  if (Buffer.byteLength(normalized) > 4096) throw new BadRequest('path: is longer than 4096 bytes', 'path');
  return normalized;
}

/** A parsed `Range: bytes=...` header: `a-b` / `a-` (end undefined), or the last `suffix` bytes (`-n`). */
export type ByteRange = { start: number; end?: number } | { suffix: number };

/**
 * The one byte range of a Range header, or undefined when the whole file is to be sent: no header,
 * another unit, several ranges (no multipart/byteranges answers) or a malformed one, all of which
 * RFC 9110 §14.2 lets a server ignore.
 */
export function parseRange(header: string | undefined): ByteRange | undefined {
  if (!header) return undefined;
  const match = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!match) return undefined;
  const [, first, last] = match as unknown as [string, string, string];
  if (first === '' && last === '') return undefined;
  const number = (text: string) => (text.length > 15 ? Number.MAX_SAFE_INTEGER : Number(text));
  if (first === '') return { suffix: number(last) };
  const start = number(first);
  if (last === '') return { start };
  const end = number(last);
  return end < start ? undefined : { start, end };
}

/** The inclusive byte positions a range selects in a file of `size` bytes; RangeNotSatisfiable when it selects none. */
export function resolveRange(range: ByteRange, size: number): { start: number; end: number } {
  const refuse = () => new RangeNotSatisfiable(`the range is outside the file (${size} bytes)`, size);
  if ('suffix' in range) {
    if (range.suffix === 0 || size === 0) throw refuse();
    return { start: Math.max(0, size - range.suffix), end: size - 1 };
  }
  if (range.start >= size) throw refuse();
  return { start: range.start, end: Math.min(range.end ?? size - 1, size - 1) };
}

/** One entry of the outputs directory as the sweep sees it: a job name and when its directory last changed. */
export interface OutputsEntry {
  job: string;
  /** Milliseconds since the epoch. */
  modifiedMs: number;
}

/**
 * The outputs the retention sweep removes: older than the retention (by their directory's
 * modification time) and of a Job that no longer exists. 0 keeps everything forever. Outputs of a
 * Job that still exists stay however old they are: the user may still look at the job.
 */
export function outputsToSweep(
  entries: OutputsEntry[],
  existingJobs: ReadonlySet<string>,
  nowMs: number,
  retentionSeconds: number,
): string[] {
  if (retentionSeconds <= 0) return [];
  const cutoff = nowMs - retentionSeconds * 1000;
  return entries.filter((entry) => entry.modifiedMs < cutoff && !existingJobs.has(entry.job)).map((entry) => entry.job);
}

/** A retention sweep runs at most this often per namespace and process, off the request's path. */
export const outputsSweepIntervalMs = 3600 * 1000;

/**
 * Remembers when each namespace was last swept, so a sweep starts at most once per interval; the
 * sweep itself runs in the background and never fails a request.
 */
export class SweepSchedule {
  private readonly last = new Map<string, number>();

  constructor(private readonly intervalMs = outputsSweepIntervalMs) {}

  /** Runs `sweep` unless one ran for this namespace within the interval. */
  maybeRun(namespace: string, sweep: () => Promise<unknown>, nowMs = Date.now()): void {
    const last = this.last.get(namespace);
    if (last !== undefined && nowMs - last < this.intervalMs) return;
    this.last.set(namespace, nowMs);
    void sweep().catch((error: Error) => console.error(`kbatch: sweeping old outputs in ${namespace} failed:`, error.message));
  }
}

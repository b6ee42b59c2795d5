import { streamAbortMarker } from '../lib/contract.ts';
import { networkErrorCode } from '../lib/net.ts';
import type { KbatchApi, LogQuery } from './api.ts';
import { CliError } from './errors.ts';
import { failureText, isTransient, Reconnects, type ReconnectOptions } from './retry.ts';

export interface LogRequest extends LogQuery {
  follow: boolean;
  /** Show each line's timestamp (the server's RFC 3339 time). */
  timestamps: boolean;
}

export interface FollowDeps extends ReconnectOptions {
  /** Whether the job is over, asked when a stream ends cleanly (a proxy may close an idle one early). */
  jobFinished: () => Promise<boolean>;
}

const timestampedLine = /^(\[[^\]\s]+\] )?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d))(?: |$)(.*)$/s;

/** RFC 3339 with up to nanoseconds, as an integer, because Kubernetes' fractions (trimmed zeros) do not sort as text. */
export function timestampNanos(stamp: string): bigint | undefined {
  const match = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(stamp);
  if (!match) return undefined;
  const millis = Date.parse(`${match[1]}${match[3]}`);
  if (Number.isNaN(millis)) return undefined;
  const fraction = (match[2] ?? '').slice(0, 9).padEnd(9, '0');
  return BigInt(millis) * 1_000_000n + BigInt(fraction);
}

export interface ParsedLogLine {
  /** `[pod-name] ` when the server interleaves several pods, else empty. */
  prefix: string;
  stamp: string;
  nanos: bigint;
  text: string;
}

export function parseLogLine(line: string): ParsedLogLine | undefined {
  const match = timestampedLine.exec(line);
  if (!match) return undefined;
  const nanos = timestampNanos(match[2]!);
  if (nanos === undefined) return undefined;
  return { prefix: match[1] ?? '', stamp: match[2]!, nanos, text: match[3] ?? '' };
}

/**
 * Remembers, per pod, the time of the last line printed and how many lines carried exactly that
 * time. After a reconnect that asked for lines from a little earlier, it drops what was already
 * printed, so nothing is repeated; asking from earlier means nothing is lost to clock rounding
 * (Kubernetes' sinceTime has whole seconds, our local backend's is exclusive).
 */
export class LogCursor {
  private readonly last = new Map<string, { nanos: bigint; count: number }>();
  private replay = new Map<string, { nanos: bigint; skip: number }>();

  /** Call before reading a resumed stream. */
  beginReplay(): void {
    this.replay = new Map([...this.last].map(([prefix, seen]) => [prefix, { nanos: seen.nanos, skip: seen.count }]));
  }

  /** True when the line is new and should be printed; records it. */
  accept(line: ParsedLogLine): boolean {
    const replay = this.replay.get(line.prefix);
    if (replay) {
      if (line.nanos < replay.nanos) return false;
      if (line.nanos === replay.nanos && replay.skip > 0) {
        replay.skip--;
        return false;
      }
      this.replay.delete(line.prefix);
    }
    const seen = this.last.get(line.prefix);
    if (seen && seen.nanos === line.nanos) seen.count++;
    else this.last.set(line.prefix, { nanos: line.nanos, count: 1 });
    return true;
  }

  /** Where to resume: a second before the oldest "last line" of any pod, or undefined before the first line. */
  resumeSince(): string | undefined {
    if (!this.last.size) return undefined;
    let oldest: bigint | undefined;
    for (const { nanos } of this.last.values()) if (oldest === undefined || nanos < oldest) oldest = nanos;
    return new Date(Number(oldest! / 1_000_000n) - 1000).toISOString();
  }
}

/**
 * Splits a byte stream into lines. A last line without its newline is yielded only when the stream
 * ended cleanly: after a drop it may be cut short, and the resume fetches it again whole.
 */
async function* lines(body: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let carry = '';
  for await (const chunk of body) {
    const parts = (carry + decoder.decode(chunk, { stream: true })).split('\n');
    carry = parts.pop() ?? '';
    for (const part of parts) yield part;
  }
  carry += decoder.decode();
  if (carry) yield carry;
}

/** Plain logs: one request, printed as the server sends them. */
export async function printLogs(api: KbatchApi, name: string, request: LogRequest, write: (text: string) => void): Promise<void> {
  const response = await api.jobLogs(name, request);
  if (!response.body) return;
  const decoder = new TextDecoder();
  // Enough of the end to spot the server's in-band failure marker.
  let tail = '';
  const emit = (text: string) => {
    if (!text) return;
    write(text);
    tail = (tail + text).slice(-512);
  };
  try {
    for await (const chunk of response.body) emit(decoder.decode(chunk, { stream: true }));
  } catch (error) {
    throw new CliError(
      `the connection to kbatch broke while reading the logs of job ${name} (${networkErrorCode(error) ?? (error as Error).message})`,
    );
  }
  emit(decoder.decode());
  const reason = abortReason(tail);
  if (reason !== undefined) throw new CliError(`the server could not finish the logs of job ${name}: ${reason}`);
}

/** The reason after the server's abort marker when the text ends with that marker's line. */
function abortReason(tail: string): string | undefined {
  const lastLine = tail.replace(/\n$/, '').split('\n').pop() ?? '';
  return lastLine.startsWith(streamAbortMarker) ? lastLine.slice(streamAbortMarker.length) : undefined;
}

/**
 * Follows logs until the job ends, surviving dropped connections: it always asks for timestamps
 * (stripping them unless the user wanted them) and on a drop resumes with `since` from the last
 * line received, so no line is lost or printed twice.
 */
export async function followLogs(
  api: KbatchApi,
  name: string,
  request: LogRequest,
  write: (text: string) => void,
  deps: FollowDeps,
): Promise<void> {
  const cursor = new LogCursor();
  const reconnects = new Reconnects(deps);
  // Only a stream that once worked is worth retrying; a wrong URL should fail at once.
  let connected = false;
  for (let attempt = 0; ; attempt++) {
    const resumed = attempt > 0;
    if (resumed) cursor.beginReplay();
    const since = (resumed ? cursor.resumeSince() : undefined) ?? request.since;
    let dropped: string | undefined;
    try {
      // A tail only makes sense before the first line; afterwards `since` says where to continue.
      const response = await api.jobLogs(name, {
        follow: true,
        timestamps: true,
        pod: request.pod,
        since,
        tail: cursor.resumeSince() ? undefined : request.tail,
      });
      connected = true;
      // Leaving the loop early (the abort marker) closes the generator and with it the connection.
      for await (const line of response.body ? lines(response.body) : []) {
        if (line.startsWith(streamAbortMarker)) {
          dropped = line;
          break;
        }
        const parsed = parseLogLine(line);
        if (!parsed) {
          // Every real line carries a timestamp; an untimestamped empty one is the marker's padding.
          if (line) write(`${line}\n`);
        } else if (cursor.accept(parsed)) {
          reconnects.succeeded();
          write(`${parsed.prefix}${request.timestamps ? `${parsed.stamp} ` : ''}${parsed.text}\n`);
        }
      }
    } catch (error) {
      if (!connected || !isTransient(error)) throw error;
      dropped = failureText(error);
    }
    if (!dropped) {
      // A clean end of a single pod's stream means the pod finished; for a job, make sure it is over.
      if (request.pod || (await deps.jobFinished())) return;
      dropped = 'the stream ended while the job is still running';
    }
    const reason = dropped;
    await reconnects.failed(
      reason,
      () =>
        new CliError(
          `lost the log stream of job ${name} (${reason}) and could not resume it`,
          1,
          `the job keeps running; resume with kbatch job logs ${name} --follow`,
        ),
    );
  }
}

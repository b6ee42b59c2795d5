import { networkErrorCode } from '../lib/net.ts';
import { ApiError, CliError, UnreachableError } from './errors.ts';

/** A connection cut while a body was being read: node reports it as an "aborted" ECONNRESET or a premature close. */
function isPrematureClose(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  const message = (error as Error)?.message ?? '';
  return code === 'ERR_STREAM_PREMATURE_CLOSE' || /premature close|terminated|aborted/i.test(message);
}

/**
 * True for a failure that may pass by itself: no answer (refused, reset, timed out), a connection
 * cut mid-body, or kbatch (or its proxy) saying it cannot serve right now. Everything else (404,
 * 403, a bad request) would fail the same way again.
 */
export function isTransient(error: unknown): boolean {
  if (error instanceof ApiError) return error.reason === 'Unavailable' || error.reason === 'BadGateway' || error.status >= 502;
  return error instanceof UnreachableError || networkErrorCode(error) !== undefined || isPrematureClose(error);
}

/** One short phrase for a notice: the CLI's own message (cut to a line), or the network code. */
export function failureText(error: unknown): string {
  const text = error instanceof CliError ? error.message : (networkErrorCode(error) ?? (error as Error)?.message ?? String(error));
  return text.length > 160 ? `${text.slice(0, 160)}…` : text;
}

export interface ReconnectOptions {
  sleep?: (ms: number) => Promise<void>;
  /** Consecutive failures before giving up. */
  maxReconnects?: number;
  /** Told about each retry, e.g. to print a notice on stderr. */
  onReconnect?: (attempt: number, reason: string) => void;
}

const sleepFor = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The reconnect policy shared by log following, job waiting and submitting: backoff from 0.25 s
 * doubling to 5 s, and 8 failures in a row (about 23 s, enough for a server restart or a rolling
 * update) give up. A success resets the count, so a long wait survives any number of separate blips.
 */
export class Reconnects {
  private failures = 0;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly max: number;

  constructor(private readonly options: ReconnectOptions = {}) {
    this.sleep = options.sleep ?? sleepFor;
    this.max = options.maxReconnects ?? 8;
  }

  succeeded(): void {
    this.failures = 0;
  }

  /** Records a failure: throws what `giveUp` makes once there were too many in a row, else tells and waits. */
  async failed(reason: string, giveUp: () => Error): Promise<void> {
    this.failures++;
    if (this.failures > this.max) throw giveUp();
    this.options.onReconnect?.(this.failures, reason);
    await this.sleep(Math.min(5000, 250 * 2 ** (this.failures - 1)));
  }
}

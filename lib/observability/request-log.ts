import type { ServerResponse } from 'node:http';
import type { LogLevel } from '../config.ts';
import { logLine } from '../http/lifecycle.ts';
import type { IncomingRequest } from '../http/types.ts';
import { httpDuration, httpRequests } from './metrics.ts';

/**
 * One JSON line per request on stderr, and the request metrics, both written when the response
 * closes. What goes in is chosen, never copied: the route pattern (not the path, which may carry
 * anything a client typed), the caller's name, the job name, sizes and reasons. Never headers, so
 * never the token or a cookie, and never the query.
 */
export interface RequestRecord {
  route?: string;
  user?: string;
  job?: string;
  /** The ErrorBody reason of a failed request. */
  reason?: string;
  /** The `reason` of the Kubernetes Status behind it (NotFound, AlreadyExists, Forbidden, ...). */
  kubernetesReason?: string;
}

const order: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
let threshold: LogLevel = 'info';

/** Set once at start from KBATCH_LOG_LEVEL. */
export function setLogLevel(level: LogLevel): void {
  threshold = level;
}

export function logEnabled(level: LogLevel): boolean {
  return order[level] >= order[threshold];
}

/** A structured line at `level`, if the level setting lets it through. */
export function logEvent(level: LogLevel, msg: string, fields: Record<string, unknown> = {}): void {
  if (!logEnabled(level)) return;
  logLine(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }));
}

const records = new WeakMap<ServerResponse, RequestRecord>();

/** Adds what a handler learned (the caller, the job) to the request's log line. */
export function noteRequest(res: ServerResponse, fields: RequestRecord): void {
  const record = records.get(res);
  if (record) Object.assign(record, fields);
}

/** The Status reason Kubernetes gave, when the error came from its API. */
function kubernetesReasonOf(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || typeof (error as { code?: unknown }).code !== 'number' || !('body' in error))
    return undefined;
  let body = (error as { body: unknown }).body;
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch {
      return undefined;
    }
  }
  const reason = (body as { reason?: unknown } | null)?.reason;
  return typeof reason === 'string' && /^[A-Za-z]{1,64}$/.test(reason) ? reason : undefined;
}

export function noteError(res: ServerResponse, error: unknown, reason: string): void {
  noteRequest(res, { reason, kubernetesReason: kubernetesReasonOf(error) });
}

const knownMethods = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
/** Probes and scrapes come every few seconds from every kubelet and Prometheus: debug, not info. */
const quietRoutes = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * Starts the record of a request; its line and metrics are written when the response closes
 * (finished, or the client went away: then `aborted` is true and the status is what was sent).
 * Bytes in are the body bytes Node's parser handed over (counted at `push`, which the parser calls
 * per chunk: a `data` listener would switch the stream to flowing before its handler reads it, and
 * the socket's counter already holds a small body with the headers). Bytes out are counted on the
 * connection, headers included, as keep-alive requests on one connection follow each other.
 */
export function beginRequest(req: IncomingRequest, res: ServerResponse): void {
  const started = process.hrtime.bigint();
  const socket = req.socket;
  const writtenAtStart = socket?.bytesWritten ?? 0;
  let bytesIn = 0;
  const push = req.push;
  req.push = function countingPush(this: IncomingRequest, chunk: unknown, encoding?: BufferEncoding) {
    if (chunk && typeof (chunk as { length?: unknown }).length === 'number') bytesIn += (chunk as { length: number }).length;
    return push.call(this, chunk, encoding);
  };
  const record: RequestRecord = {};
  records.set(res, record);
  res.once('close', () => {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const method = knownMethods.has(req.method ?? '') ? req.method! : 'OTHER';
    const route = record.route ?? 'unmatched';
    const status = res.statusCode;
    httpRequests.inc({ method, route, status: String(status) });
    httpDuration.observe({ method, route, status: String(status) }, seconds);
    const level: LogLevel = status >= 500 ? 'error' : quietRoutes.has(route) ? 'debug' : 'info';
    logEvent(level, 'request', {
      user: record.user,
      method,
      route,
      status,
      durationMs: Math.round(seconds * 1e4) / 10,
      job: record.job,
      bytesIn,
      bytesOut: socket ? socket.bytesWritten - writtenAtStart : undefined,
      reason: record.reason,
      kubernetesReason: record.kubernetesReason,
      aborted: res.writableFinished ? undefined : true,
    });
  });
}

import { AsyncLocalStorage } from 'node:async_hooks';
import type { ServerResponse } from 'node:http';
import type { IncomingRequest } from './types.ts';

/**
 * Process-wide state of a serving process: which request a callback belongs to, whether the
 * server is draining, and the last-resort handlers. One server per process (each function is its
 * own process), so module state is the process's state.
 */

export interface RequestScope {
  req: IncomingRequest;
  res: ServerResponse;
  /** Answers the request with this error (JSON, or the stream-abort marker once headers are out). */
  fail(error: unknown): void;
}

/**
 * The request every callback runs for, including callbacks of streams and timers it started, so a
 * stray throw can be answered on its own request. AsyncLocalStorage on Node 24 is an async context
 * frame, not an async hook: it costs nothing per promise (unlike functions-framework's `domain`).
 */
export const requestScope = new AsyncLocalStorage<RequestScope>();

const draining = new AbortController();
/** Aborted when the server starts draining (SIGTERM): open streams end with the resume marker. */
export const drainSignal: AbortSignal = draining.signal;
export function startDraining(): void {
  draining.abort();
}

// Hub tokens are 32 hex characters; JWTs and other keys are longer runs of the same alphabet.
const secretLike = /\b(token|bearer|basic)\s+\S+|[A-Za-z0-9_\-+=]{32,}/gi;

/** One line describing an error for the server log: no newlines, no stack beyond its first frame, nothing token-shaped. */
export function describeError(error: unknown): string {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : `non-error thrown: ${String(error)}`;
  const frame = error instanceof Error ? /\n\s+at (.+)/.exec(error.stack ?? '')?.[1] : undefined;
  const line = `${text}${frame ? ` (at ${frame})` : ''}`
    .replace(/\s+/g, ' ')
    .replace(secretLike, (match, scheme?: string) => (scheme ? `${scheme} [redacted]` : '[redacted]'));
  return line.length > 400 ? `${line.slice(0, 400)}…` : line;
}

/** The path of a request without its query (which may carry anything). */
export function requestLabel(req: IncomingRequest): string {
  return `${req.method} ${(req.url ?? '').split('?')[0]!.slice(0, 200)}`;
}

let log: (line: string) => void = (line) => process.stderr.write(`${line}\n`);
export function logLine(line: string): void {
  log(line);
}

let installed = false;
/**
 * No request may end the process. An exception or rejection nobody caught is logged on one line
 * and, when it belongs to a request, answered on that request; the process keeps serving.
 */
export function installLastResort(logger?: (line: string) => void): void {
  if (logger) log = logger;
  if (installed) return;
  installed = true;
  const report = (kind: string, error: unknown) => {
    const scope = requestScope.getStore();
    logLine(`kbatch: last resort: ${kind}${scope ? ` during ${requestLabel(scope.req)}` : ''}: ${describeError(error)}; still serving`);
    if (scope) {
      try {
        scope.fail(error);
      } catch {
        /* the connection is already gone */
      }
    }
  };
  process.on('uncaughtException', (error) => report('uncaught exception', error));
  process.on('unhandledRejection', (reason) => report('unhandled rejection', reason));
}

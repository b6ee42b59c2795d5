import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { streamAbortMarker, type ErrorBody } from '../contract.ts';
import { bodyUnread } from './body.ts';
import { isServerFault, RangeNotSatisfiable, toHttpError, type HttpError } from './errors.ts';
import { describeError, drainSignal, logLine, requestLabel } from './lifecycle.ts';
import { noteError } from '../observability/request-log.ts';
import type { IncomingRequest, Reply, ReplyHeaders, RequestContext } from './types.ts';

/**
 * Writing answers. Every error leaves as the JSON ErrorBody; a stream that fails after its status
 * line ends with the stream-abort marker and a cut connection. An answer given before the request
 * body was read (a 401, 413 or 415 on a large upload) drains the rest before closing, so the
 * client and the Hub's proxy read the answer instead of a connection reset.
 */

/**
 * What is left of a refused body is read and discarded up to here, then the connection is cut. The
 * time bound is on silence, not on the whole drain: a slow but steady client (a large upload over a
 * slow link, or through a busy proxy) still gets to read its answer; one that stops sending does not
 * hold the connection.
 */
const drainLimitBytes = 256 * 1024 * 1024;
const drainIdleMs = 15_000;
/** After the abort marker, a client that does not take it within this time is cut anyway. */
const abortFlushMs = 1000;

/** Responses whose answer is complete (or being completed by a drain): nothing more may be written. */
const answered = new WeakSet<ServerResponse>();

export function errorBody(error: HttpError): ErrorBody {
  // `detail` is what the upstream Python CLI prints; `status`, `reason` and `field` serve everyone else.
  const body: ErrorBody = { detail: error.message, status: error.status, reason: error.reason };
  if (error.field !== undefined) body.field = error.field;
  return body;
}

function endAfterDrain(req: IncomingRequest, res: ServerResponse): void {
  let drained = 0;
  const stop = (cut: boolean) => {
    clearTimeout(timer);
    req.off('data', onData).off('end', onEnd).off('error', onCut);
    res.end();
    if (cut) res.destroy();
  };
  const onData = (chunk: Buffer) => {
    drained += chunk.length;
    if (drained > drainLimitBytes) stop(true);
    else timer.refresh();
  };
  const onEnd = () => stop(false);
  const onCut = () => stop(true);
  // unref: a client holding a drained connection open must not keep the process alive.
  const timer = setTimeout(onCut, drainIdleMs).unref();
  // A parser that gave up (multipart) may still be attached: the rest of the body goes nowhere.
  req.unpipe();
  req.on('data', onData).on('end', onEnd).on('error', onCut);
  res.once('close', () => clearTimeout(timer));
  req.resume();
}

/**
 * Writes a complete answer. With the body unread, the answer goes out first and the rest of the body
 * is drained. No `Connection: close` then: a proxy in front (the Hub's CHP) passes that header on and
 * closes its client's socket as soon as the answer is through, while the client is still sending, so
 * the client sees EPIPE instead of the answer. A drain that is cut destroys the connection anyway.
 */
function writeWhole(
  res: ServerResponse,
  status: number,
  headers: Record<string, string | string[] | number>,
  payload?: string | Buffer,
): void {
  if (answered.has(res) || res.writableEnded || res.destroyed) return;
  answered.add(res);
  const req = res.req as IncomingRequest | undefined;
  const unread = req !== undefined && bodyUnread(req);
  res.writeHead(status, drainSignal.aborted ? { ...headers, connection: 'close' } : headers);
  if (!unread || !req) {
    res.end(payload);
    return;
  }
  if (payload !== undefined) res.write(payload);
  endAfterDrain(req, res);
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: ReplyHeaders = {}): void {
  const payload = JSON.stringify(body);
  writeWhole(
    res,
    status,
    { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(payload), ...headers },
    payload,
  );
}

/**
 * Ends a stream whose 200 is gone: the marker says why in-band, then the connection is cut without
 * the final chunk, so any HTTP client sees an incomplete response rather than a clean end.
 */
export function writeStreamAbort(res: ServerResponse, message: string): void {
  if (answered.has(res) || res.writableEnded || res.destroyed) {
    if (!res.writableEnded) res.destroy();
    return;
  }
  answered.add(res);
  const cut = setTimeout(() => res.destroy(), abortFlushMs);
  res.write(`\n${streamAbortMarker}${message.replace(/\n/g, ' ')}\n`, () => {
    clearTimeout(cut);
    res.destroy();
  });
}

export function sendError(res: ServerResponse, error: unknown): void {
  const httpError = toHttpError(error);
  noteError(res, error, httpError.reason);
  if (isServerFault(error, httpError)) {
    const req = res.req as IncomingRequest | undefined;
    logLine(`kbatch: ${httpError.status} ${httpError.reason}${req ? ` on ${requestLabel(req)}` : ''}: ${describeError(error)}`);
  }
  if (res.headersSent) writeStreamAbort(res, httpError.message);
  else
    sendJson(
      res,
      httpError.status,
      errorBody(httpError),
      // RFC 9110 §15.5.17: a 416 says the size of what the range missed.
      httpError instanceof RangeNotSatisfiable ? { 'content-range': `bytes */${httpError.size}` } : {},
    );
}

type Outcome = 'end' | 'client gone' | 'shutdown' | { error: unknown };

/**
 * Pipes a stream to the client with backpressure (no per-chunk work of ours) until it ends, the
 * client leaves, the stream fails, or the server starts draining.
 */
function pump(source: Readable, res: ServerResponse, clientGone: AbortSignal): Promise<Outcome> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      source.off('end', onEnd).off('error', onError).off('close', onClose);
      clientGone.removeEventListener('abort', onClientGone);
      drainSignal.removeEventListener('abort', onShutdown);
      source.unpipe(res);
      resolve(outcome);
    };
    const onEnd = () => settle('end');
    const onError = (error: unknown) => settle(clientGone.aborted ? 'client gone' : { error });
    const onClose = () =>
      settle(source.readableEnded ? 'end' : clientGone.aborted ? 'client gone' : { error: new Error('the stream closed before its end') });
    const onClientGone = () => settle('client gone');
    const onShutdown = () => settle('shutdown');
    source.on('end', onEnd).on('error', onError).on('close', onClose);
    clientGone.addEventListener('abort', onClientGone, { once: true });
    drainSignal.addEventListener('abort', onShutdown, { once: true });
    if (clientGone.aborted) return onClientGone();
    if (drainSignal.aborted) return onShutdown();
    source.pipe(res, { end: false });
  });
}

async function sendStream(ctx: RequestContext, reply: Extract<Reply, { stream: unknown }>): Promise<void> {
  const { res } = ctx;
  const source = reply.stream instanceof Readable ? reply.stream : Readable.from(reply.stream);
  // Proxies in front of the Hub (nginx) buffer unless told otherwise; log followers need every line at once.
  res.writeHead(reply.status ?? 200, {
    'content-type': reply.contentType ?? 'text/plain; charset=utf-8',
    'x-accel-buffering': 'no',
    'cache-control': 'no-store',
    ...reply.headers,
  });
  res.flushHeaders();
  const outcome = await pump(source, res, ctx.signal);
  if (outcome === 'end') {
    answered.add(res);
    res.end();
    return;
  }
  source.destroy();
  if (outcome === 'client gone') res.destroy();
  // The CLI resumes a follow from its last line when it sees the marker: on another replica, or this one restarted.
  else if (outcome === 'shutdown') writeStreamAbort(res, 'server shutting down; resume');
  else sendError(res, outcome.error);
}

export async function sendReply(ctx: RequestContext, reply: Reply): Promise<void> {
  const { res } = ctx;
  // Already answered (the last resort answered a stray error of this request): drop the late reply.
  if (answered.has(res) || res.headersSent) {
    if ('stream' in reply && reply.stream instanceof Readable) reply.stream.destroy();
    return;
  }
  if ('json' in reply) return sendJson(res, reply.status ?? 200, reply.json, reply.headers);
  if ('empty' in reply) return writeWhole(res, reply.status, { ...reply.headers });
  if ('text' in reply) {
    const payload = Buffer.from(reply.text, 'utf8');
    return writeWhole(
      res,
      reply.status ?? 200,
      { 'content-type': reply.contentType ?? 'text/plain; charset=utf-8', 'content-length': payload.length, ...reply.headers },
      payload,
    );
  }
  return sendStream(ctx, reply);
}

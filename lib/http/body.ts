import { Readable } from 'node:stream';
import { BadRequest, PayloadTooLarge, UnsupportedMediaType } from './errors.ts';
import type { IncomingRequest } from './types.ts';

/**
 * Reading request bodies, the one place that knows whether a body was already read. Handlers call
 * these only after authenticating, so an anonymous client cannot make the server buffer, inflate or
 * parse anything; every limit is checked while the bytes arrive, not after.
 */

/** Spec and manifest bodies are a few KiB; a route that carries code (upstream POST /jobs) passes its own limit. */
export const defaultJsonLimitBytes = 1024 * 1024;
/** Kubernetes manifests nest about 12 levels deep; 64 leaves room and keeps every later recursion shallow. */
export const maxJsonDepth = 64;

export function isMultipart(req: IncomingRequest): boolean {
  return /^multipart\/form-data/i.test(req.headers['content-type'] ?? '');
}

/** The body functions-framework's own server already buffered, when the handler runs inside it. */
export function bufferedByFramework(req: IncomingRequest): Buffer | undefined {
  return Buffer.isBuffer(req.rawBody) ? req.rawBody : undefined;
}

/** The body as a stream, whether or not a framework read it first. */
export function requestBodyStream(req: IncomingRequest): Readable {
  const buffered = bufferedByFramework(req);
  return buffered ? Readable.from([buffered]) : req;
}

/** True while bytes of the body may still be on the wire: an answer now must drain or close. */
export function bodyUnread(req: IncomingRequest): boolean {
  return !bufferedByFramework(req) && !req.complete;
}

/** Compressed request bodies are refused: inflating them is the amplification a small request could buy. */
export function assertIdentityEncoding(req: IncomingRequest): void {
  const encoding = req.headers['content-encoding'];
  if (encoding === undefined) return;
  const codings = encoding
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter(Boolean);
  if (codings.every((c) => c === 'identity')) return;
  throw new UnsupportedMediaType(`Content-Encoding "${codings.join(', ')}" is not accepted: send the body uncompressed`);
}

function declaredLength(req: IncomingRequest): number | undefined {
  const raw = req.headers['content-length'];
  if (raw === undefined || !/^\d+$/.test(raw)) return undefined;
  return Number(raw);
}

/** Collects the body up to `limitBytes`; past it, stops reading (the reply drains what is left). */
export async function readBody(req: IncomingRequest, limitBytes: number): Promise<Buffer> {
  assertIdentityEncoding(req);
  const tooLarge = () => new PayloadTooLarge(`Request body exceeds ${limitBytes} bytes`);
  const buffered = bufferedByFramework(req);
  if (buffered) {
    if (buffered.length > limitBytes) throw tooLarge();
    return buffered;
  }
  if ((declaredLength(req) ?? 0) > limitBytes) throw tooLarge();
  if (req.readableEnded) throw new Error('request body was already read');
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (outcome: () => void) => {
      req.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
      req.pause();
      outcome();
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limitBytes) finish(() => reject(tooLarge()));
      else chunks.push(chunk);
    };
    const onEnd = () => finish(() => resolve(Buffer.concat(chunks, size)));
    const onError = () => finish(() => reject(new BadRequest('The request body could not be read')));
    // The client went away mid-body; nobody will read this answer, but the handler must still end.
    const onClose = () => finish(() => reject(new BadRequest('The request body was cut off')));
    req.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
    req.resume();
  });
}

/** JSON bodies come as application/json or a `+json` type; a body without a type is taken as JSON, as FastAPI (upstream) does. */
export function assertJsonContentType(req: IncomingRequest): void {
  const header = req.headers['content-type'];
  if (header === undefined || header.trim() === '') return;
  const [type = '', ...parameters] = header.split(';');
  const mediaType = type.trim().toLowerCase();
  if (!/^application\/(?:[a-z0-9.!#$&^_-]+\+)?json$/.test(mediaType)) {
    throw new UnsupportedMediaType(`Content-Type "${mediaType}" is not accepted here: send the body as application/json`);
  }
  for (const parameter of parameters) {
    const [name, value = ''] = parameter.split('=').map((part) => part.trim().toLowerCase());
    if (name === 'charset' && !['utf-8', 'utf8', '"utf-8"'].includes(value)) {
      throw new UnsupportedMediaType(`charset "${value}" is not accepted: send the body as UTF-8 JSON`);
    }
  }
}

/** True when arrays and objects nest deeper than `max`; a linear scan over bytes, cheaper than the parse it guards. */
export function nestsDeeperThan(body: Uint8Array, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < body.length; i++) {
    const byte = body[i]!;
    if (inString) {
      if (byte === 0x5c)
        i++; // backslash: skip the escaped byte
      else if (byte === 0x22) inString = false;
    } else if (byte === 0x22) inString = true;
    else if (byte === 0x7b || byte === 0x5b) {
      if (++depth > max) return true;
    } else if (byte === 0x7d || byte === 0x5d) depth--;
  }
  return false;
}

/** Reads and parses a JSON body after checking its type, encoding, size and nesting. */
export async function readJson(req: IncomingRequest, limitBytes = defaultJsonLimitBytes): Promise<unknown> {
  assertJsonContentType(req);
  const body = await readBody(req, limitBytes);
  if (body.length === 0) throw new BadRequest('Request body is empty; expected JSON');
  if (nestsDeeperThan(body, maxJsonDepth)) throw new BadRequest(`Request body nests deeper than ${maxJsonDepth} levels`);
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new BadRequest('Request body is not valid JSON');
  }
}

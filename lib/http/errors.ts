import type { ErrorReason } from '../contract.ts';
import { networkErrorCode } from '../net.ts';

/** The reason an error carries when its thrower names none: the generic one of its status. */
function reasonForStatus(status: number): ErrorReason {
  const byStatus: Record<number, ErrorReason> = {
    400: 'BadRequest',
    401: 'Unauthorized',
    403: 'Forbidden',
    404: 'NotFound',
    405: 'MethodNotAllowed',
    409: 'Conflict',
    413: 'PayloadTooLarge',
    415: 'UnsupportedMediaType',
    416: 'RangeNotSatisfiable',
    422: 'Invalid',
    501: 'NotImplemented',
    502: 'BadGateway',
    503: 'Unavailable',
  };
  return byStatus[status] ?? (status >= 400 && status < 500 ? 'BadRequest' : 'Internal');
}

/**
 * The one error model of the service. Every failure a handler can report is one of these;
 * `toHttpError` maps anything else (Kubernetes API errors included) onto them in one place.
 * `reason` is the machine-readable half of the contract (lib/contract.ts); `message` is prose.
 */
export class HttpError extends Error {
  readonly reason: ErrorReason;
  constructor(
    readonly status: number,
    message: string,
    reason?: ErrorReason,
    /** The request field at fault, when there is one. */
    readonly field?: string,
  ) {
    super(message);
    this.name = new.target.name;
    this.reason = reason ?? reasonForStatus(status);
  }
}

export class BadRequest extends HttpError {
  constructor(message: string, field?: string, reason: ErrorReason = 'BadRequest') {
    super(400, message, reason, field);
  }
}
export class Unauthorized extends HttpError {
  constructor(message = 'Missing or invalid JupyterHub token', reason: ErrorReason = 'Unauthorized') {
    super(401, message, reason);
  }
}
export class Forbidden extends HttpError {
  constructor(message: string, reason: ErrorReason = 'Forbidden') {
    super(403, message, reason);
  }
}
export class NotFound extends HttpError {
  constructor(message: string, reason: ErrorReason = 'NotFound') {
    super(404, message, reason);
  }
}
export class MethodNotAllowed extends HttpError {
  constructor(message: string, reason: ErrorReason = 'MethodNotAllowed') {
    super(405, message, reason);
  }
}
export class Conflict extends HttpError {
  constructor(message: string, reason: ErrorReason = 'Conflict') {
    super(409, message, reason);
  }
}
export class PayloadTooLarge extends HttpError {
  constructor(message: string, reason: ErrorReason = 'PayloadTooLarge') {
    super(413, message, reason);
  }
}
export class UnsupportedMediaType extends HttpError {
  constructor(message: string, reason: ErrorReason = 'UnsupportedMediaType') {
    super(415, message, reason);
  }
}
/** A Range outside the file; the message says its size (the reply carries it in Content-Range too). */
export class RangeNotSatisfiable extends HttpError {
  constructor(
    message: string,
    /** The file's size, for the Content-Range header of the answer. */
    readonly size: number,
    reason: ErrorReason = 'RangeNotSatisfiable',
  ) {
    super(416, message, reason);
  }
}
/** A fault of the service itself; its message must not leak internals (stack, paths, tokens). */
export class InternalError extends HttpError {
  constructor(message = 'Internal server error', reason: ErrorReason = 'Internal') {
    super(500, message, reason);
  }
}
export class NotImplemented extends HttpError {
  constructor(message: string, reason: ErrorReason = 'NotImplemented') {
    super(501, message, reason);
  }
}
/** A dependency (the Hub, the Kubernetes API) answered with something unusable. */
export class BadGateway extends HttpError {
  constructor(message: string, reason: ErrorReason = 'BadGateway') {
    super(502, message, reason);
  }
}
/** A dependency (the Hub, the Kubernetes API) cannot be reached, or the server is shutting down. */
export class Unavailable extends HttpError {
  constructor(message: string, reason: ErrorReason = 'Unavailable') {
    super(503, message, reason);
  }
}

interface KubernetesApiErrorLike {
  code: number;
  body: unknown;
}

function isKubernetesApiError(error: unknown): error is KubernetesApiErrorLike {
  return (
    typeof error === 'object' &&
    error !== null &&
    'code' in error &&
    typeof (error as { code: unknown }).code === 'number' &&
    'body' in error
  );
}

function kubernetesMessage(body: unknown): string {
  if (typeof body === 'string') {
    try {
      const parsed = JSON.parse(body) as { message?: unknown };
      if (typeof parsed.message === 'string') return parsed.message;
    } catch {
      /* not JSON: fall through to the generic message, never relay raw bodies (they may be HTML) */
    }
    return 'Kubernetes API error';
  }
  if (body && typeof body === 'object' && typeof (body as { message?: unknown }).message === 'string') {
    return (body as { message: string }).message;
  }
  return 'Kubernetes API error';
}

/** Translates a Kubernetes API answer: what the user got wrong is relayed, what the service got wrong is its own 500. */
function fromKubernetes(code: number, message: string): HttpError {
  // The service calls Kubernetes with its own identity, never the user's: a refusal is a
  // deployment fault (RBAC, credentials) an admin must fix, not the caller's 403.
  if (code === 401 || code === 403) {
    return new InternalError(
      `Kubernetes refused the kbatch service's own identity (${code}: ${message}); an administrator must check its credentials and RBAC`,
    );
  }
  if (code === 400) return new BadRequest(message);
  if (code === 404) return new NotFound(message);
  if (code === 409) return new Conflict(message);
  if (code === 422) return new HttpError(422, message, 'Invalid');
  // 410: an expired list continue token; the client starts the listing again.
  if (code === 410) return new BadRequest(`${message} (start the listing again without "continue")`, 'continue');
  if (code === 429 || code === 503 || code === 504) return new Unavailable(`Kubernetes API unavailable (${code}): ${message}`);
  return new BadGateway(`Kubernetes API answered ${code}: ${message}`);
}

/**
 * Translates any thrown value into an HttpError. Anything unrecognised is a 500 with a generic
 * message: its own text (which may hold paths or internals) stays in the server log.
 */
export function toHttpError(error: unknown): HttpError {
  if (error instanceof HttpError) return error;
  if (isKubernetesApiError(error)) return fromKubernetes(error.code, kubernetesMessage(error.body));
  const code = networkErrorCode(error);
  if (code) return new Unavailable(`Kubernetes API unreachable (${code})`);
  return new InternalError();
}

/** True when the error is the service's fault and belongs in the server log (one line). */
export function isServerFault(error: unknown, httpError: HttpError): boolean {
  return httpError.status === 500 || (httpError.status >= 500 && !(error instanceof HttpError));
}

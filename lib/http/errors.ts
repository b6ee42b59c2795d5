import type { ErrorReason } from '../contract.ts';
import { networkErrorCode } from '../net.ts';

/**
 * The one error model of the service. Every failure a handler can report is one of these;
 * `toHttpError` maps anything else (Kubernetes API errors included) onto them in one place.
 */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class BadRequest extends HttpError {
  constructor(message: string, readonly field?: string) {
    super(400, message, field ? { field } : {});
  }
}
export class Unauthorized extends HttpError {
  constructor(message = 'Missing or invalid JupyterHub token') {
    super(401, message);
  }
}
export class Forbidden extends HttpError {
  // The optional reason is the http engineer's planned signature; until it lands it rides in `details`.
  constructor(message: string, reason?: ErrorReason) {
    super(403, message, reason ? { reason } : {});
  }
}
export class NotFound extends HttpError {
  constructor(message: string) {
    super(404, message);
  }
}
export class Conflict extends HttpError {
  constructor(message: string) {
    super(409, message);
  }
}
export class PayloadTooLarge extends HttpError {
  constructor(message: string) {
    super(413, message);
  }
}
export class Unprocessable extends HttpError {
  constructor(message: string) {
    super(422, message);
  }
}
/** A dependency (the Hub, the Kubernetes API) failed or could not be reached. */
export class Upstream extends HttpError {
  constructor(message: string, status = 502) {
    super(status, message);
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
      return body;
    }
    return body;
  }
  if (body && typeof body === 'object' && typeof (body as { message?: unknown }).message === 'string') {
    return (body as { message: string }).message;
  }
  return 'Kubernetes API error';
}

/** Translates any thrown value into an HttpError. Kubernetes statuses are relayed as-is (upstream kbatch does the same). */
export function toHttpError(error: unknown): HttpError {
  if (error instanceof HttpError) return error;
  if (isKubernetesApiError(error)) {
    const status = error.code >= 400 && error.code < 600 ? error.code : 502;
    return new HttpError(status, kubernetesMessage(error.body));
  }
  const code = networkErrorCode(error);
  if (code) return new Upstream(`Kubernetes API unreachable (${code})`, 503);
  return new HttpError(500, 'Internal server error');
}

import { BadRequest, PayloadTooLarge } from '../http/errors.ts';
import type { ErrorReason } from '../contract.ts';

/*
 * The two ways an upload is refused, each with its contract reason. Written to work with both
 * shapes of HttpError during the merge: the one where the router spreads `details` into the body,
 * and the one (http engineer) with a `reason` property set by the constructor. Once that is merged,
 * these become `new BadRequest(message, 'code', 'InvalidArchive')` and
 * `new PayloadTooLarge(message, 'UploadTooLarge')`.
 */

function withReason<T extends BadRequest | PayloadTooLarge>(error: T, reason: ErrorReason): T {
  Object.assign(error, { reason });
  const details = (error as { details?: Record<string, unknown> }).details;
  if (details) details.reason = reason;
  return error;
}

/** 400: the archive (or a path in it) is corrupt, unsupported or unsafe. */
export function invalidArchive(message: string): BadRequest {
  return withReason(new BadRequest(`code: ${message}`, 'code'), 'InvalidArchive');
}

/** 413: the upload is over its byte or file limits (before or after unpacking). */
export function uploadTooLarge(message: string): PayloadTooLarge {
  return withReason(new PayloadTooLarge(`code: ${message}`), 'UploadTooLarge');
}

/** A name from an archive, quoted and cut short, safe to put in a message (no raw newlines). */
export function quoted(name: string): string {
  return JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}…` : name);
}

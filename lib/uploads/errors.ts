import { BadRequest, PayloadTooLarge } from '../http/errors.ts';
import type { ErrorReason } from '../contract.ts';

/*
 * The two ways an upload is refused, each with its contract reason. Until HttpError carries a
 * `reason` of its own (http engineer), the reason rides in `details`, which the router spreads
 * into the JSON body. After that merge these become
 * `new BadRequest(message, 'code', 'InvalidArchive')` and `new PayloadTooLarge(message, 'UploadTooLarge')`.
 */

function withReason<T extends BadRequest | PayloadTooLarge>(error: T, reason: ErrorReason): T {
  error.details.reason = reason;
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

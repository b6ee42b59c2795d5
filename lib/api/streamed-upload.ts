import type { User } from '../auth/types.ts';
import { assertIdentityEncoding, requestBodyStream } from '../http/body.ts';
import type { IncomingRequest, Reply } from '../http/router.ts';
import { signUploadReference } from '../uploads/reference.ts';
import type { Deps } from './deps.ts';
import { ensureOwnNamespace } from './namespace.ts';
import { uploadBytes } from '../observability/metrics.ts';

/**
 * POST /api/v1/uploads with the archive itself as the body (Content-Type application/x-tar, or
 * application/gzip for a tar.gz) instead of multipart: the backend streams it into storage (the
 * Kubernetes backend into the user's volume through the volume helper's exec, the local one into
 * its data dir), so a large upload never sits in memory or etcd.
 * The answer is the same JSON as a multipart upload, with the same signed reference.
 */

const tarTypes = new Set(['application/x-tar', 'application/tar']);
const gzipTypes = new Set(['application/gzip', 'application/x-gzip', 'application/x-tar+gzip', 'application/x-compressed-tar']);

/** The archive's format when the request's body is a bare archive, else undefined. */
export function streamedUploadFormat(req: IncomingRequest): 'tar' | 'tar.gz' | undefined {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (tarTypes.has(type)) return 'tar';
  if (gzipTypes.has(type)) return 'tar.gz';
  return undefined;
}

export async function streamedUpload(deps: Deps, user: User, req: IncomingRequest, format: 'tar' | 'tar.gz'): Promise<Reply> {
  const { settings, backend } = deps;
  // The archive's own gzip is the format; a transfer coding on top would be inflated blind.
  assertIdentityEncoding(req);
  const limits = { maxBytes: settings.maxUploadBytes, maxFiles: settings.maxUploadFiles };
  await ensureOwnNamespace(deps, user);
  const expiresAt = new Date(Date.now() + settings.uploadTtlSeconds * 1000);
  const { code, summary } = await backend.storeCodeStream(user, requestBodyStream(req), {
    gzip: format === 'tar.gz',
    limits,
    uploadTtlSeconds: settings.uploadTtlSeconds,
  });
  uploadBytes.inc(summary.archiveBytes);
  const reference = await signUploadReference(
    { user: user.name, code, bytes: summary.bytes, files: summary.files, sha256: summary.sha256 },
    settings.uploadSecret,
    settings.uploadTtlSeconds,
  );
  return {
    status: 201,
    json: {
      upload: reference,
      files: summary.files,
      bytes: summary.bytes,
      archiveBytes: summary.archiveBytes,
      sha256: summary.sha256,
      storage: code.kind,
      expiresAt: expiresAt.toISOString(),
    },
  };
}

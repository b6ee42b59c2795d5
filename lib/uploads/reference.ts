import { SignJWT, jwtVerify } from 'jose';
import { BadRequest, Forbidden } from '../http/errors.ts';

/** Where an upload's normalised archive (gzip'd tar) lives. */
export type StoredCode =
  | { kind: 'configmap'; namespace: string; name: string }
  | { kind: 'pvc'; namespace: string; claim: string; path: string }
  | { kind: 'local'; path: string };

export interface UploadClaims {
  user: string;
  code: StoredCode;
  bytes: number;
  files: number;
  sha256: string;
}

const issuer = 'kbatch';
const audience = 'kbatch-upload';

/**
 * Uploads and submits are separate stateless calls, possibly on different replicas. The reference
 * the client carries between them is signed, names its owner and expires, so one user cannot point
 * a job at another user's upload and nothing has to be remembered server-side.
 */
export async function signUploadReference(claims: UploadClaims, secret: Uint8Array, ttlSeconds: number): Promise<string> {
  return new SignJWT({ code: claims.code, bytes: claims.bytes, files: claims.files, sha256: claims.sha256 })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(claims.user)
    .setIssuer(issuer)
    .setAudience(audience)
    .setIssuedAt()
    .setExpirationTime(`${ttlSeconds}s`)
    .sign(secret);
}

export async function verifyUploadReference(reference: string, user: string, secret: Uint8Array): Promise<UploadClaims> {
  let payload;
  try {
    ({ payload } = await jwtVerify(reference, secret, { issuer, audience, algorithms: ['HS256'] }));
  } catch (error) {
    const expired = (error as { code?: string }).code === 'ERR_JWT_EXPIRED';
    throw new BadRequest(
      expired ? 'upload: the upload reference has expired; upload the code again' : 'upload: not a valid upload reference',
      'upload',
    );
  }
  if (payload.sub !== user) throw new Forbidden('upload: this upload belongs to another user');
  return {
    user: payload.sub,
    code: payload.code as StoredCode,
    bytes: Number(payload.bytes),
    files: Number(payload.files),
    sha256: String(payload.sha256),
  };
}

import { createHash, randomBytes } from 'node:crypto';

/**
 * Upstream-compatible namespace name (kbatch-proxy `namespace_for_username`): lower-cased, runs of
 * other characters become one dash, 40 characters at most, and a short hash is appended whenever
 * that changed the name, so `Test` and `test` never share a namespace.
 */
export function namespaceForUser(username: string): string {
  let safe = username.toLowerCase().replace(/[^a-z0-9]+/g, '-').slice(0, 40).replace(/^-+|-+$/g, '');
  if (safe !== username) {
    const hash = createHash('sha256').update(username, 'utf8').digest('hex').slice(0, 7);
    safe = `${safe}--${hash}`;
  }
  return `kbatch-${safe}`;
}

/**
 * A label value that identifies the user. Upstream escapes the raw name, which yields invalid
 * label values for many names (leading dash, over 63 characters); the namespace suffix is always valid.
 */
export function userLabelValue(username: string): string {
  return namespaceForUser(username).slice('kbatch-'.length);
}

const suffixAlphabet = 'bcdfghjklmnpqrstvwxz2456789';

/** Kubernetes-style random suffix, chosen here so the Job, its Secret and its pods share one name. */
export function randomSuffix(length = 5): string {
  return suffixFromBytes(randomBytes(length));
}

/** The same alphabet from given bytes: a retried submit derives its Job name from its idempotency key. */
export function suffixFromBytes(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => suffixAlphabet[b % suffixAlphabet.length]).join('');
}

export const jobNamePrefixPattern = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** Job names become pod label values (63 max) with a 6-character suffix, and pod names add 6 more. */
export const maxJobNamePrefixLength = 40;

export function jobNameFor(prefix: string, suffix: string = randomSuffix()): string {
  const trimmed = prefix.replace(/-+$/, '');
  return `${trimmed}-${suffix}`;
}

export const labels = {
  username: 'kbatch.jupyter.org/username',
  managedBy: 'app.kubernetes.io/managed-by',
  upload: 'kbatch.jupyter.org/upload',
  component: 'kbatch.jupyter.org/component',
  /** On an upload nothing owns yet (POST /uploads): the only ConfigMaps the abandoned-upload sweep lists. */
  unclaimedUpload: 'kbatch.jupyter.org/unclaimed-upload',
  /** Hash of (user, Idempotency-Key) on a Job or CronJob: a retry finds the first attempt's object. */
  idempotencyKey: 'kbatch.jupyter.org/idempotency-key',
} as const;

export const annotations = {
  username: 'kbatch.jupyter.org/username',
  uploadExpires: 'kbatch.jupyter.org/upload-expires',
  profile: 'kbatch.jupyter.org/profile',
  /** Millisecond submit time: creationTimestamp has whole seconds, too coarse to order a burst of submits. */
  submittedAt: 'kbatch.jupyter.org/submitted-at',
  /** Hash of the request a keyed submit made, so reusing its key for a different request is refused. */
  requestSha256: 'kbatch.jupyter.org/request-sha256',
} as const;

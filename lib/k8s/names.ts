import { createHash, randomBytes } from 'node:crypto';

/**
 * A Hub name that is already a safe namespace suffix keeps it: a DNS-1123 label without a double
 * dash, at most 40 characters. This is exactly the set of names upstream kbatch-proxy maps to
 * `kbatch-<name>` (its `namespace_for_username`), so existing users keep their namespaces.
 */
const plainName = /^[a-z0-9]+(-[a-z0-9]+)*$/;
const maxPlainLength = 40;

/**
 * Every other name gets `kbatch-<readable prefix>--<hash>`. The double dash is the marker: a plain
 * name never contains one, so the two branches can never yield the same string, and within the
 * hashed branch the fixed-length suffix is the hash, so two names share a namespace only if they
 * share the hash.
 *
 * The hash is 130 bits of SHA-256 (26 base32 characters): taking over someone's namespace needs a
 * second preimage (2^130 work) and even any collision at all needs ~2^65 hashes, where the old 28
 * bits fell to a laptop in seconds. Base32 (RFC 4648, lower-cased) because a namespace allows only
 * [a-z0-9-]: it packs 5 bits per character where hex packs 4, leaving room for the readable prefix.
 */
const hashCharacters = 26;
const hashMarker = '--';
/** 63 (DNS label) - 7 (`kbatch-`) - 2 (marker) - 26 (hash). */
const maxPrefixLength = 63 - 'kbatch-'.length - hashMarker.length - hashCharacters;
/** Names with no latin letter or digit at all (`田中太郎`, `😀`, `...`) still get a readable start. */
const fallbackPrefix = 'user';

const base32Alphabet = 'abcdefghijklmnopqrstuvwxyz234567';

function base32(bytes: Buffer): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += base32Alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += base32Alphabet[(value << (5 - bits)) & 31];
  return out;
}

/** What an admin recognises in `kubectl get ns`: accents folded, other characters as single dashes. */
function readablePrefix(username: string): string {
  const folded = username.normalize('NFKD').replace(/\p{M}/gu, '').toLowerCase();
  const prefix = folded
    .replace(/[^a-z0-9]+/g, '-')
    .slice(0, maxPrefixLength)
    .replace(/^-+|-+$/g, '');
  return prefix || fallbackPrefix;
}

/** Non-empty, and no lone UTF-16 surrogate (in a `u` regex a proper pair is one code point, outside this range). */
export function isWellFormedName(username: string): boolean {
  return username.length > 0 && !/[\uD800-\uDFFF]/u.test(username);
}

/**
 * The one place a Hub name becomes a namespace; everything else reads `User.namespace`. Injective
 * over all well-formed names and always a valid DNS-1123 label of at most 63 characters.
 * Ill-formed strings (lone UTF-16 surrogates) are refused: UTF-8 cannot encode them, so two of them
 * would hash alike; the authenticator never lets such a name through.
 */
export function namespaceForUser(username: string): string {
  if (!isWellFormedName(username)) throw new TypeError('a user name must be a non-empty, well-formed Unicode string');
  if (username.length <= maxPlainLength && plainName.test(username)) return `kbatch-${username}`;
  const hash = base32(createHash('sha256').update(username, 'utf8').digest()).slice(0, hashCharacters);
  return `kbatch-${readablePrefix(username)}${hashMarker}${hash}`;
}

/**
 * The label value naming the user on every object: the namespace without `kbatch-`, i.e. the name
 * itself for plain names, else derived from the hash. Always a valid label value (at most 56
 * characters, starts and ends alphanumeric); the exact name goes in the `username` annotation.
 */
export function userLabelValue(namespace: string): string {
  return namespace.slice('kbatch-'.length);
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

/** Every label key kbatch reads or writes, its own and the ones the Job controller sets. */
export const labels = {
  username: 'kbatch.jupyter.org/username',
  managedBy: 'app.kubernetes.io/managed-by',
  upload: 'kbatch.jupyter.org/upload',
  component: 'kbatch.jupyter.org/component',
  /** Set by the Job controller on its pods (1.27+)... */
  jobName: 'batch.kubernetes.io/job-name',
  /** ...and under this older key too, which some tools still select on. */
  legacyJobName: 'job-name',
  /** The index of a pod of an Indexed Job. */
  jobCompletionIndex: 'batch.kubernetes.io/job-completion-index',
  /** On an upload nothing owns yet (POST /uploads): the only ConfigMaps the abandoned-upload sweep lists. */
  unclaimedUpload: 'kbatch.jupyter.org/unclaimed-upload',
  /** Hash of (user, Idempotency-Key) on a Job or CronJob: a retry finds the first attempt's object. */
  idempotencyKey: 'kbatch.jupyter.org/idempotency-key',
} as const;

/** The selector for the pods of one job; the only place a selector string is written. */
export function podsOfJobSelector(jobName: string): string {
  return `${labels.jobName}=${jobName}`;
}

export const annotations = {
  /** The exact Hub name: on a namespace it is the owner record, checked before kbatch acts there. */
  username: 'kbatch.jupyter.org/username',
  uploadExpires: 'kbatch.jupyter.org/upload-expires',
  profile: 'kbatch.jupyter.org/profile',
  /** Millisecond submit time: creationTimestamp has whole seconds, too coarse to order a burst of submits. */
  submittedAt: 'kbatch.jupyter.org/submitted-at',
  /** Hash of the request a keyed submit made, so reusing its key for a different request is refused. */
  requestSha256: 'kbatch.jupyter.org/request-sha256',
  /** A notebook run as JSON (lib/jobs/notebook.ts): the notebook and its parameters, shown by `job show`. Not secret. */
  notebook: 'kbatch.jupyter.org/notebook',
} as const;

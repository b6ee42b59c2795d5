import { hkdfSync, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { defaultMaxJobResources } from './jobs/policy.ts';
import { isNegative, parseQuantity } from './k8s/quantity.ts';

/** Every setting of the service, read once from the environment and validated at start. */
export interface Settings {
  port: number;
  host: string;
  /** `hub` checks tokens with JupyterHub; `none` (local backend only) acts as one local user. */
  auth: 'hub' | 'none';
  localUser: string | undefined;
  /** Path prefix the Hub proxy keeps on every request, always with a trailing slash. */
  prefix: string;
  hubApiUrl: string;
  serviceName: string;
  authCacheSeconds: number;
  backend: 'kubernetes' | 'local';
  kubeconfig: string | undefined;
  jobTtlSeconds: number | null;
  jobExtraEnv: Record<string, string>;
  jobTemplateFile: string | undefined;
  profileFile: string | undefined;
  createUserNamespace: boolean;
  uploadSecret: Uint8Array;
  uploadSecretIsEphemeral: boolean;
  uploadTtlSeconds: number;
  maxUploadBytes: number;
  maxUploadFiles: number;
  /** Archives up to this size go into a ConfigMap; larger ones into the per-user PVC. */
  configMapMaxBytes: number;
  uploadPvcSize: string;
  uploadPvcStorageClass: string | undefined;
  uploadPvcAccessMode: string;
  helperImage: string;
  // --- Data path (lib/backend/kubernetes/volume.ts): the per-user volume helper pod.
  /** A user's volume helper pod unused this long is deleted; the next transfer makes a new one. */
  volumeHelperIdleSeconds: number;
  // --- Job outputs (lib/jobs/outputs.ts, README "Outputs").
  /** Outputs of a Job that no longer exists are removed this long after their last change; 0 keeps them. */
  outputsRetentionSeconds: number;
  localDataDir: string;
  logPollSeconds: number;
  shutdownGraceSeconds: number;
  // --- Job policy and namespace quotas (lib/jobs/policy.ts, README "Job limits"); read by jobPolicySettings below.
  /** Per job pod: resource name to its maximum request or limit; the keys are the resources users may name. */
  maxJobResources: Record<string, string>;
  /** Taint keys users may tolerate in their own spec (profiles may set any). */
  allowedTolerationKeys: string[];
  /** Node label keys users may require in nodeAffinityRequired (profiles may set any). */
  allowedNodeLabelKeys: string[];
  /** `spec.hard` of a ResourceQuota created with each user namespace. */
  namespaceQuota: Record<string, string> | undefined;
  /** The Container item of a LimitRange created with each user namespace. */
  namespaceLimitRange: Partial<Record<'default' | 'defaultRequest' | 'max' | 'min', Record<string, string>>> | undefined;
  /** The web page's Hub OAuth login (lib/web); undefined when no OAuth client secret is set. */
  web: WebSettings | undefined;
  // --- Operator: request log, readiness, admin view (lib/observability, README "Operating kbatch").
  /** Lowest level written to stderr: request lines are info (5xx: error; probes and /metrics: debug). */
  logLevel: LogLevel;
  /** A Hub scope on the caller's token that lets it list every user's jobs (`?allUsers=true`). */
  adminScope: string;
  /** How long a readiness verdict (Kubernetes API or data dir, Hub) is reused. */
  readyCacheSeconds: number;
  /** How long one readiness check may take before it counts as unreachable. */
  readyTimeoutMs: number;
}

export const logLevels = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof logLevels)[number];

function operatorSettings(env: Env) {
  const logLevel = (env.KBATCH_LOG_LEVEL ?? 'info').toLowerCase();
  if (!(logLevels as readonly string[]).includes(logLevel))
    throw new ConfigError(`KBATCH_LOG_LEVEL must be one of ${logLevels.join(', ')}, got "${env.KBATCH_LOG_LEVEL}"`);
  return {
    logLevel: logLevel as LogLevel,
    // JupyterHub's admin role holds admin:users, and a token with the default "inherit" permissions carries it.
    adminScope: env.KBATCH_ADMIN_SCOPE || 'admin:users',
    readyCacheSeconds: integer(env, 'KBATCH_READY_CACHE_SECONDS', 5),
    readyTimeoutMs: integer(env, 'KBATCH_READY_TIMEOUT_MS', 2000, 1),
  };
}

// --- job outputs: how long they outlive their Job ----------------------------------------------------------
function outputsSettings(env: Env) {
  // Set but empty means "keep forever", like 0; unset is 30 days.
  const raw = env.KBATCH_OUTPUTS_RETENTION_SECONDS;
  return {
    outputsRetentionSeconds: raw !== undefined && raw.trim() === '' ? 0 : integer(env, 'KBATCH_OUTPUTS_RETENTION_SECONDS', 30 * 24 * 3600),
  };
}

// --- web page: Hub OAuth client and the encrypted session cookie (lib/web) -------------------------------
/** Where the browser logs in and how its session cookie is sealed. */
export interface WebSettings {
  /** `service-<name>` unless the Hub registered the service under another oauth_client_id. */
  clientId: string;
  /** The service's `api_token` in the Hub config: it doubles as the OAuth client secret. */
  clientSecret: string;
  /** Must equal the service's `oauth_redirect_uri` at the Hub, character for character. */
  redirectUri: string;
  /** Where the browser is sent to log in; a path on the Hub's public host unless JUPYTERHUB_HOST says otherwise. */
  authorizeUrl: string;
  /** Called by the server, so on the Hub's API URL like every other Hub call. */
  tokenUrl: string;
  /** 32 bytes for A256GCM, derived (HKDF) from KBATCH_COOKIE_SECRET or else from the client secret. */
  cookieKey: Uint8Array;
  /** A session never outlives the Hub token it holds; this caps it further. */
  sessionMaxAgeSeconds: number;
}

/** Secrets shorter than this are refused: the cookie key is only as strong as what it is derived from. */
const minWebSecretLength = 32;

function loadWebSettings(env: Env, prefix: string, serviceName: string, hubApiUrl: string): WebSettings | undefined {
  const clientSecret = env.KBATCH_OAUTH_CLIENT_SECRET;
  if (!clientSecret) return undefined;
  const cookieSecret = env.KBATCH_COOKIE_SECRET || undefined;
  if (cookieSecret !== undefined && cookieSecret.length < minWebSecretLength) {
    throw new ConfigError(`KBATCH_COOKIE_SECRET must be at least ${minWebSecretLength} characters`);
  }
  if (cookieSecret === undefined && clientSecret.length < minWebSecretLength) {
    throw new ConfigError(
      `KBATCH_OAUTH_CLIENT_SECRET is shorter than ${minWebSecretLength} characters: set KBATCH_COOKIE_SECRET (at least ${minWebSecretLength}) to seal the session cookie`,
    );
  }
  // Every function of a deployment derives the same key, so a cookie sealed by one opens in another.
  const cookieKey = new Uint8Array(hkdfSync('sha256', cookieSecret ?? clientSecret, 'kbatch', 'kbatch web session cookie v1', 32));
  const hubBase = normalizePrefix(env.JUPYTERHUB_BASE_URL ?? '/');
  return {
    clientId: env.KBATCH_OAUTH_CLIENT_ID ?? env.JUPYTERHUB_CLIENT_ID ?? `service-${serviceName}`,
    clientSecret,
    redirectUri: env.KBATCH_OAUTH_REDIRECT_URI ?? env.JUPYTERHUB_OAUTH_CALLBACK_URL ?? `${prefix}oauth_callback`,
    authorizeUrl: env.KBATCH_OAUTH_AUTHORIZE_URL ?? `${(env.JUPYTERHUB_HOST ?? '').replace(/\/+$/, '')}${hubBase}hub/api/oauth2/authorize`,
    tokenUrl: `${hubApiUrl}/oauth2/token`,
    cookieKey,
    sessionMaxAgeSeconds: integer(env, 'KBATCH_SESSION_MAX_AGE_SECONDS', 12 * 3600, 60),
  };
}
// --- end of web page settings ----------------------------------------------------------------------------

export class ConfigError extends Error {}

type Env = Record<string, string | undefined>;

function integer(env: Env, name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = /^\s*-?\d+\s*$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(
      `${name} must be an integer ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`}, got "${raw}"`,
    );
  }
  return value;
}

function boolean(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name]?.toLowerCase();
  if (raw === undefined || raw === '') return fallback;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(`${name} must be true or false, got "${env[name]}"`);
}

function stringMap(env: Env, name: string): Record<string, string> {
  const raw = env[name];
  if (!raw) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ConfigError(`${name} must be a JSON object of strings`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed) || Object.values(parsed).some((v) => typeof v !== 'string')) {
    throw new ConfigError(`${name} must be a JSON object of strings`);
  }
  return parsed as Record<string, string>;
}

function jsonObject(env: Env, name: string, example: string): Record<string, unknown> | undefined {
  const raw = env[name];
  if (!raw) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ConfigError(`${name} must be a JSON object, e.g. ${example}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new ConfigError(`${name} must be a JSON object, e.g. ${example}`);
  return parsed as Record<string, unknown>;
}

function quantityMap(value: unknown, name: string): Record<string, string> {
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`${name} must map resource names to quantities`);
  return Object.fromEntries(
    Object.entries(value).map(([resource, quantity]) => {
      const parsed = typeof quantity === 'string' || typeof quantity === 'number' ? parseQuantity(String(quantity)) : undefined;
      if (!parsed || isNegative(parsed))
        throw new ConfigError(`${name}: "${String(quantity)}" for ${resource} is not a quantity (e.g. 4, 500m, 16Gi)`);
      return [resource, String(quantity)];
    }),
  );
}

function keyList(env: Env, name: string): string[] {
  return (env[name] ?? '')
    .split(',')
    .map((key) => key.trim())
    .filter(Boolean);
}

/** The job policy and namespace quota settings, one block (see the README table). */
function jobPolicySettings(env: Env) {
  const maximums = jsonObject(env, 'KBATCH_MAX_JOB_RESOURCES', '{"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "2"}');
  const quota = jsonObject(env, 'KBATCH_NAMESPACE_QUOTA', '{"requests.cpu": "32", "limits.memory": "128Gi", "count/jobs.batch": "200"}');
  const limitRange = jsonObject(
    env,
    'KBATCH_NAMESPACE_LIMIT_RANGE',
    '{"default": {"cpu": "1", "memory": "1Gi"}, "defaultRequest": {"cpu": "100m", "memory": "256Mi"}}',
  );
  const limitRangeKeys = ['default', 'defaultRequest', 'max', 'min'] as const;
  for (const key of Object.keys(limitRange ?? {})) {
    if (!(limitRangeKeys as readonly string[]).includes(key))
      throw new ConfigError(`KBATCH_NAMESPACE_LIMIT_RANGE: unknown key "${key}" (allowed: ${limitRangeKeys.join(', ')})`);
  }
  return {
    maxJobResources: maximums ? quantityMap(maximums, 'KBATCH_MAX_JOB_RESOURCES') : { ...defaultMaxJobResources },
    allowedTolerationKeys: keyList(env, 'KBATCH_ALLOWED_TOLERATION_KEYS'),
    allowedNodeLabelKeys: keyList(env, 'KBATCH_ALLOWED_NODE_LABEL_KEYS'),
    // Quota names (requests.cpu, pods, count/jobs.batch) all take quantities.
    namespaceQuota: quota && quantityMap(quota, 'KBATCH_NAMESPACE_QUOTA'),
    namespaceLimitRange:
      limitRange &&
      Object.fromEntries(
        Object.entries(limitRange).map(([key, value]) => [key, quantityMap(value, `KBATCH_NAMESPACE_LIMIT_RANGE.${key}`)]),
      ),
  };
}

function normalizePrefix(raw: string): string {
  let prefix = raw.startsWith('/') ? raw : `/${raw}`;
  if (!prefix.endsWith('/')) prefix += '/';
  return prefix;
}

function isFile(path: string): boolean {
  return statSync(path, { throwIfNoEntry: false })?.isFile() ?? false;
}

/** The kubeconfig named by KUBECONFIG (a list, as kubectl takes it: the first file that exists); naming none that exists is an error. */
function explicitKubeconfig(env: Env): string | undefined {
  const raw = env.KUBECONFIG;
  if (raw === undefined || raw === '') return undefined;
  const paths = raw.split(':').filter(Boolean);
  const found = paths.find((path) => isFile(path));
  if (!found) throw new ConfigError(`KUBECONFIG names ${paths.length > 1 ? 'no file that exists' : 'a file that does not exist'}: ${raw}`);
  return found;
}

function chooseBackend(env: Env): { backend: 'kubernetes' | 'local'; kubeconfig: string | undefined } {
  const explicit = env.KBATCH_BACKEND;
  if (explicit && explicit !== 'kubernetes' && explicit !== 'local')
    throw new ConfigError(`KBATCH_BACKEND must be "kubernetes" or "local", got "${explicit}"`);
  const kubeconfig = explicitKubeconfig(env);
  const inCluster = Boolean(env.KUBERNETES_SERVICE_HOST);
  if (explicit === 'local') return { backend: 'local', kubeconfig };
  if (explicit === 'kubernetes') {
    if (kubeconfig || inCluster) return { backend: 'kubernetes', kubeconfig };
    // Asked for explicitly, the usual ~/.kube/config counts too (as for kubectl).
    const home = join(env.HOME ?? homedir(), '.kube', 'config');
    if (isFile(home)) return { backend: 'kubernetes', kubeconfig: home };
    throw new ConfigError('KBATCH_BACKEND=kubernetes needs a cluster: set KUBECONFIG, run in a cluster, or provide ~/.kube/config');
  }
  // Chosen implicitly, only an explicit KUBECONFIG counts: a stray ~/.kube/config must not turn `npm start` into cluster mode.
  return { backend: inCluster || kubeconfig ? 'kubernetes' : 'local', kubeconfig };
}

/**
 * The upload signing key: whoever knows it can forge upload references for any user, so the
 * placeholder shipped in knative/config.yaml and other obvious stand-ins are refused, as are short keys.
 */
function uploadSecret(env: Env): string | undefined {
  const secret = env.KBATCH_UPLOAD_SECRET;
  if (secret === undefined) return undefined;
  const hint = 'generate one with: openssl rand -hex 32';
  if (Buffer.byteLength(secret, 'utf8') < 32) throw new ConfigError(`KBATCH_UPLOAD_SECRET must be at least 32 bytes; ${hint}`);
  const placeholder = /replace|change.?me|change.?it|placeholder|example|your.?(?:secret|key)|<|todo|xxxx/i;
  const distinct = new Set(secret).size;
  if (placeholder.test(secret) || distinct < 8)
    throw new ConfigError(`KBATCH_UPLOAD_SECRET looks like a placeholder, not a secret; ${hint}`);
  return secret;
}

export function loadSettings(env: Env = process.env): Settings {
  const secret = uploadSecret(env);
  const { backend, kubeconfig } = chooseBackend(env);
  const ttlRaw = env.KBATCH_JOB_TTL_SECONDS_AFTER_FINISHED;
  const settings: Settings = {
    port: integer(env, 'PORT', 8080, 0, 65535),
    host: env.KBATCH_HOST ?? (env.KUBERNETES_SERVICE_HOST ? '0.0.0.0' : '127.0.0.1'),
    auth: 'hub',
    localUser: env.KBATCH_LOCAL_USER || undefined,
    prefix: normalizePrefix(env.KBATCH_PREFIX ?? env.JUPYTERHUB_SERVICE_PREFIX ?? '/services/kbatch/'),
    hubApiUrl: (env.JUPYTERHUB_API_URL ?? 'http://127.0.0.1:8081/hub/api').replace(/\/+$/, ''),
    serviceName: env.JUPYTERHUB_SERVICE_NAME ?? 'kbatch',
    // Short, because a token revoked at the Hub keeps working for this long.
    authCacheSeconds: integer(env, 'KBATCH_AUTH_CACHE_SECONDS', 30),
    backend,
    kubeconfig,
    jobTtlSeconds: ttlRaw === 'none' || ttlRaw === 'null' ? null : integer(env, 'KBATCH_JOB_TTL_SECONDS_AFTER_FINISHED', 3600),
    jobExtraEnv: stringMap(env, 'KBATCH_JOB_EXTRA_ENV'),
    jobTemplateFile: env.KBATCH_JOB_TEMPLATE_FILE || undefined,
    profileFile: env.KBATCH_PROFILE_FILE || undefined,
    createUserNamespace: boolean(env, 'KBATCH_CREATE_USER_NAMESPACE', true),
    uploadSecret: new TextEncoder().encode(secret ?? randomBytes(32).toString('hex')),
    uploadSecretIsEphemeral: secret === undefined,
    uploadTtlSeconds: integer(env, 'KBATCH_UPLOAD_TTL_SECONDS', 24 * 3600, 60),
    maxUploadBytes: integer(env, 'KBATCH_MAX_UPLOAD_BYTES', 256 * 1024 * 1024, 1),
    maxUploadFiles: integer(env, 'KBATCH_MAX_UPLOAD_FILES', 10_000, 1),
    // etcd caps one object at 1.5 MiB and Kubernetes a ConfigMap at 1 MiB of data; base64 in
    // the request body grows it by a third, so 768 KiB of archive stays safely below both.
    configMapMaxBytes: integer(env, 'KBATCH_CONFIGMAP_MAX_BYTES', 768 * 1024, 1),
    uploadPvcSize: env.KBATCH_UPLOAD_PVC_SIZE ?? '10Gi',
    uploadPvcStorageClass: env.KBATCH_UPLOAD_PVC_STORAGE_CLASS || undefined,
    uploadPvcAccessMode: env.KBATCH_UPLOAD_PVC_ACCESS_MODE ?? 'ReadWriteOnce',
    helperImage: env.KBATCH_HELPER_IMAGE ?? 'busybox:1.37',
    volumeHelperIdleSeconds: integer(env, 'KBATCH_VOLUME_HELPER_IDLE_SECONDS', 300, 1),
    ...outputsSettings(env),
    localDataDir: env.KBATCH_LOCAL_DIR ?? join(homedir(), '.local', 'share', 'kbatch'),
    logPollSeconds: integer(env, 'KBATCH_LOG_POLL_SECONDS', 2, 1),
    shutdownGraceSeconds: integer(env, 'KBATCH_SHUTDOWN_GRACE_SECONDS', 25),
    ...jobPolicySettings(env),
    ...operatorSettings(env),
    web: undefined,
  };
  const auth = env.KBATCH_AUTH ?? (env.JUPYTERHUB_API_URL ? 'hub' : settings.backend === 'local' ? 'none' : 'hub');
  if (auth !== 'hub' && auth !== 'none') throw new ConfigError(`KBATCH_AUTH must be "hub" or "none", got "${auth}"`);
  if (auth === 'none' && (settings.backend !== 'local' || !['127.0.0.1', 'localhost', '::1'].includes(settings.host))) {
    throw new ConfigError('KBATCH_AUTH=none is only allowed with the local backend on a loopback address');
  }
  settings.auth = auth;
  if (settings.configMapMaxBytes > 768 * 1024)
    throw new ConfigError('KBATCH_CONFIGMAP_MAX_BYTES must be at most 786432 (the 1 MiB ConfigMap limit after base64)');
  if (!/^https?:\/\//.test(settings.hubApiUrl))
    throw new ConfigError(`JUPYTERHUB_API_URL must be an http(s) URL, got "${settings.hubApiUrl}"`);
  if (auth === 'hub') settings.web = loadWebSettings(env, settings.prefix, settings.serviceName, settings.hubApiUrl);
  return settings;
}

export function readOptionalFile(path: string | undefined, name: string): string | undefined {
  if (!path) return undefined;
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`${name}: cannot read ${path}: ${(error as Error).message}`);
  }
}

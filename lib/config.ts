import { hkdfSync, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

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
  localDataDir: string;
  logPollSeconds: number;
  shutdownGraceSeconds: number;
  /** The web page's Hub OAuth login (lib/web); undefined when no OAuth client secret is set. */
  web: WebSettings | undefined;
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
    throw new ConfigError(`KBATCH_OAUTH_CLIENT_SECRET is shorter than ${minWebSecretLength} characters: set KBATCH_COOKIE_SECRET (at least ${minWebSecretLength}) to seal the session cookie`);
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

function integer(env: Env, name: string, fallback: number, min = 0): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) throw new ConfigError(`${name} must be an integer >= ${min}, got "${raw}"`);
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

function normalizePrefix(raw: string): string {
  let prefix = raw.startsWith('/') ? raw : `/${raw}`;
  if (!prefix.endsWith('/')) prefix += '/';
  return prefix;
}

function chooseBackend(env: Env): 'kubernetes' | 'local' {
  const explicit = env.KBATCH_BACKEND;
  if (explicit === 'kubernetes' || explicit === 'local') return explicit;
  if (explicit) throw new ConfigError(`KBATCH_BACKEND must be "kubernetes" or "local", got "${explicit}"`);
  // Only an explicit KUBECONFIG counts: a stray ~/.kube/config must not turn `npm start` into cluster mode.
  const inCluster = Boolean(env.KUBERNETES_SERVICE_HOST);
  return inCluster || (env.KUBECONFIG !== undefined && existsSync(env.KUBECONFIG)) ? 'kubernetes' : 'local';
}

export function loadSettings(env: Env = process.env): Settings {
  const secret = env.KBATCH_UPLOAD_SECRET;
  if (secret !== undefined && secret.length < 32) throw new ConfigError('KBATCH_UPLOAD_SECRET must be at least 32 characters');
  const ttlRaw = env.KBATCH_JOB_TTL_SECONDS_AFTER_FINISHED;
  const settings: Settings = {
    port: integer(env, 'PORT', 8080),
    host: env.KBATCH_HOST ?? (env.KUBERNETES_SERVICE_HOST ? '0.0.0.0' : '127.0.0.1'),
    auth: 'hub',
    localUser: env.KBATCH_LOCAL_USER || undefined,
    prefix: normalizePrefix(env.KBATCH_PREFIX ?? env.JUPYTERHUB_SERVICE_PREFIX ?? '/services/kbatch/'),
    hubApiUrl: (env.JUPYTERHUB_API_URL ?? 'http://127.0.0.1:8081/hub/api').replace(/\/+$/, ''),
    serviceName: env.JUPYTERHUB_SERVICE_NAME ?? 'kbatch',
    authCacheSeconds: integer(env, 'KBATCH_AUTH_CACHE_SECONDS', 60),
    backend: chooseBackend(env),
    kubeconfig: env.KUBECONFIG,
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
    localDataDir: env.KBATCH_LOCAL_DIR ?? join(homedir(), '.local', 'share', 'kbatch'),
    logPollSeconds: integer(env, 'KBATCH_LOG_POLL_SECONDS', 2, 1),
    shutdownGraceSeconds: integer(env, 'KBATCH_SHUTDOWN_GRACE_SECONDS', 25),
    web: undefined,
  };
  const auth = env.KBATCH_AUTH ?? (env.JUPYTERHUB_API_URL ? 'hub' : settings.backend === 'local' ? 'none' : 'hub');
  if (auth !== 'hub' && auth !== 'none') throw new ConfigError(`KBATCH_AUTH must be "hub" or "none", got "${auth}"`);
  if (auth === 'none' && (settings.backend !== 'local' || !['127.0.0.1', 'localhost', '::1'].includes(settings.host))) {
    throw new ConfigError('KBATCH_AUTH=none is only allowed with the local backend on a loopback address');
  }
  settings.auth = auth;
  if (settings.configMapMaxBytes > 768 * 1024) throw new ConfigError('KBATCH_CONFIGMAP_MAX_BYTES must be at most 786432 (the 1 MiB ConfigMap limit after base64)');
  if (!/^https?:\/\//.test(settings.hubApiUrl)) throw new ConfigError(`JUPYTERHUB_API_URL must be an http(s) URL, got "${settings.hubApiUrl}"`);
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

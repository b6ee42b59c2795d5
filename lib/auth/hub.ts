import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { fetch as undiciFetch } from 'undici';
import { BadGateway, Forbidden, Unauthorized, Unavailable } from '../http/errors.ts';
import { isWellFormedName } from '../k8s/names.ts';
import { authCache, hubDuration } from '../observability/metrics.ts';
import type { Authenticator, User } from './types.ts';
import { resolveUser } from './user.ts';

export interface HubAuthOptions {
  hubApiUrl: string;
  serviceName: string;
  /** How long a resolved token is trusted without asking the Hub again: the revocation delay. */
  cacheSeconds: number;
  fetch?: typeof globalThis.fetch;
  now?: () => number;
  timeoutMs?: number;
}

/** What `GET {hub}/user` answers (JupyterHub 2.0+; `token_id` since 5.0). */
type HubModel = { kind?: string; name: string; groups?: string[]; admin?: boolean; scopes?: string[]; token_id?: string | null };
type CacheEntry = { expires: number; model: HubModel | null };

/**
 * A refusal is remembered at most this long (and never longer than a success), so a flood of bad
 * tokens costs the Hub one lookup per token per few seconds without making a refusal sticky.
 */
const maxNegativeCacheSeconds = 5;
/** Above this many entries the oldest go first, so random tokens cannot grow the cache without bound. */
const maxCacheEntries = 10_000;

/** `Authorization: token T` or `Bearer T`, the two forms JupyterHub itself accepts. */
export function tokenFromHeaders(headers: IncomingHttpHeaders): string | undefined {
  const header = headers.authorization;
  if (!header) return undefined;
  const [scheme, ...rest] = header.trim().split(/\s+/);
  const token = rest.join(' ');
  if (!scheme || !token || !['token', 'bearer'].includes(scheme.toLowerCase())) return undefined;
  return token;
}

export function requiredScopes(serviceName: string): string[] {
  return [`access:services!service=${serviceName}`, 'access:services'];
}

/**
 * Resolves a user's Hub token through `GET {hub}/user`. Tokens are opaque, so every new token costs
 * one Hub round trip; results are cached by token hash (a success for `cacheSeconds`, a refusal
 * shorter), and concurrent lookups of one token share a single request. Tokens themselves are
 * never logged or kept as cache keys.
 *
 * `/user` does not say when the token expires, but the token's own model does
 * (`GET {hub}/users/{name}/tokens/{token_id}`, `expires_at`), readable with the token itself when it
 * holds `read:tokens` for its owner (every token with the default "inherit" permissions). So a
 * success is cached no longer than the token lives; a token with narrower scopes is trusted for
 * `cacheSeconds` at most, as before.
 */
export class HubAuth implements Authenticator {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inFlight = new Map<string, Promise<HubModel | null>>();
  private readonly fetch: typeof globalThis.fetch;
  private readonly now: () => number;
  private lastSweep: number;

  constructor(private readonly options: HubAuthOptions) {
    // The undici package's fetch, not the global one: the Kubernetes client loads that package anyway,
    // and Node's built-in copy of undici is a second ~1 MB module to compile on a cold start.
    this.fetch = options.fetch ?? (undiciFetch as unknown as typeof globalThis.fetch);
    this.now = options.now ?? Date.now;
    this.lastSweep = this.now();
  }

  async authenticate(headers: IncomingHttpHeaders): Promise<User> {
    const token = tokenFromHeaders(headers);
    if (!token) throw new Unauthorized('Missing JupyterHub token: send "Authorization: token <your token>"');
    const model = await this.lookup(token);
    if (!model) throw new Unauthorized('Invalid or expired JupyterHub token');
    const scopes = model.scopes ?? [];
    if (!this.grantsAccess(scopes)) {
      throw new Forbidden(
        `Token for user ${model.name} lacks the scope ${requiredScopes(this.options.serviceName)[0]}; ask your Hub admin to grant it`,
      );
    }
    return resolveUser({ name: model.name, groups: model.groups ?? [], admin: Boolean(model.admin), scopes, token });
  }

  /** Entries in the cache now; for tests of the sweep. */
  get cacheSize(): number {
    return this.cache.size;
  }

  private grantsAccess(scopes: string[]): boolean {
    const needed = requiredScopes(this.options.serviceName);
    return scopes.some((scope) => needed.includes(scope));
  }

  private async lookup(token: string): Promise<HubModel | null> {
    const key = createHash('sha256').update(token).digest('hex');
    const cached = this.cache.get(key);
    if (cached && cached.expires > this.now()) {
      authCache.inc({ result: 'hit' });
      return cached.model;
    }
    const pending = this.inFlight.get(key);
    if (pending) {
      authCache.inc({ result: 'shared' });
      return pending;
    }
    authCache.inc({ result: 'miss' });
    const request = this.resolve(token)
      .then(({ model, tokenExpires }) => {
        const now = this.now();
        // The Hub answered just before the token expired: it is expired now.
        if (model && tokenExpires !== undefined && tokenExpires <= now) model = null;
        this.remember(key, model, tokenExpires, now);
        return model;
      })
      .finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, request);
    return request;
  }

  private remember(key: string, model: HubModel | null, tokenExpires: number | undefined, now: number): void {
    const ttlSeconds = model ? this.options.cacheSeconds : Math.min(this.options.cacheSeconds, maxNegativeCacheSeconds);
    const expires = Math.min(now + ttlSeconds * 1000, tokenExpires ?? Infinity);
    this.cache.delete(key);
    if (expires > now) this.cache.set(key, { model, expires });
    this.sweep(now);
  }

  /**
   * Drops expired entries once per cache lifetime (not only when the cache is full, so a quiet
   * process does not keep stale models around), then the oldest entries above the size cap.
   */
  private sweep(now: number): void {
    const interval = Math.max(this.options.cacheSeconds, 1) * 1000;
    if (now - this.lastSweep >= interval || this.cache.size > maxCacheEntries) {
      this.lastSweep = now;
      for (const [key, entry] of this.cache) if (entry.expires <= now) this.cache.delete(key);
    }
    // Map iteration is insertion order and `remember` re-inserts, so the first entries are the oldest.
    for (const key of this.cache.keys()) {
      if (this.cache.size <= maxCacheEntries) break;
      this.cache.delete(key);
    }
  }

  private async resolve(token: string): Promise<{ model: HubModel | null; tokenExpires?: number }> {
    const model = await this.askHub(token);
    // Expiry matters only for what gets cached, and only for a token that will be let in.
    if (!model || this.options.cacheSeconds <= 0 || !this.grantsAccess(model.scopes ?? [])) return { model };
    const expiry = await this.tokenExpiry(token, model);
    if (expiry === 'revoked') return { model: null };
    return { model, tokenExpires: expiry };
  }

  private async hubGet(path: string, token: string): Promise<Response> {
    const endTimer = hubDuration.startTimer({ endpoint: path === '/user' ? '/user' : '/users/:name/tokens/:id' });
    try {
      const response = await this.fetch(`${this.options.hubApiUrl}${path}`, {
        headers: { authorization: `token ${token}` },
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
      });
      endTimer({ outcome: String(response.status) });
      return response;
    } catch (error) {
      endTimer({ outcome: 'error' });
      throw new Unavailable(`JupyterHub API unreachable at ${this.options.hubApiUrl}: ${(error as Error).message}`);
    }
  }

  private async askHub(token: string): Promise<HubModel | null> {
    const response = await this.hubGet('/user', token);
    // The Hub answers 403 (not 401) for unknown, revoked or expired tokens.
    if (response.status === 401 || response.status === 403) return null;
    if (!response.ok) throw new Unavailable(`JupyterHub API answered ${response.status}`);
    const model = (await response.json()) as HubModel;
    if (typeof model?.name !== 'string') throw new Unavailable('JupyterHub API returned no user name');
    // Names become namespaces and owner records; one UTF-8 cannot represent is no Hub user's name.
    if (!isWellFormedName(model.name)) throw new BadGateway('JupyterHub API returned a user name that is not well-formed Unicode');
    return model;
  }

  /**
   * When the token expires (ms), `undefined` if it never does or the Hub will not say, `'revoked'`
   * if it vanished between the two calls. Only user tokens have this endpoint, and only tokens
   * holding `read:tokens` on their owner may read it; anything else falls back to `cacheSeconds`.
   */
  private async tokenExpiry(token: string, model: HubModel): Promise<number | undefined | 'revoked'> {
    const scopes = model.scopes ?? [];
    const canRead = scopes.includes('read:tokens') || scopes.includes(`read:tokens!user=${model.name}`);
    if (model.kind === 'service' || !model.token_id || !canRead) return undefined;
    let response: Response;
    try {
      response = await this.hubGet(`/users/${encodeURIComponent(model.name)}/tokens/${encodeURIComponent(model.token_id)}`, token);
    } catch {
      return undefined;
    }
    if (response.status === 404 || response.status === 403) {
      // 404: the token is gone. 403 with read:tokens held: the token itself stopped working.
      return 'revoked';
    }
    if (!response.ok) return undefined;
    const body = (await response.json().catch(() => undefined)) as { expires_at?: unknown } | undefined;
    if (typeof body?.expires_at !== 'string') return undefined;
    const expires = Date.parse(body.expires_at);
    return Number.isNaN(expires) ? undefined : expires;
  }
}

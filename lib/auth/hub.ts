import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Forbidden, Unauthorized, Unavailable } from '../http/errors.ts';

export interface HubUser {
  name: string;
  groups: string[];
  admin: boolean;
  scopes: string[];
  /** The caller's own token; injected into jobs as JUPYTERHUB_API_TOKEN, as upstream kbatch does. */
  token: string;
}

export interface Authenticator {
  authenticate(headers: IncomingHttpHeaders): Promise<HubUser>;
}

export interface HubAuthOptions {
  hubApiUrl: string;
  serviceName: string;
  cacheSeconds: number;
  fetch?: typeof globalThis.fetch;
  now?: () => number;
  timeoutMs?: number;
}

type HubModel = { name: string; groups?: string[]; admin?: boolean; scopes?: string[] };
type CacheEntry = { expires: number; model: HubModel | null };

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
 * one Hub round trip; results (negative ones too) are cached by token hash, and concurrent lookups
 * of one token share a single request. Tokens themselves are never logged or kept as cache keys.
 */
export class HubAuth implements Authenticator {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inFlight = new Map<string, Promise<HubModel | null>>();
  private readonly fetch: typeof globalThis.fetch;
  private readonly now: () => number;

  constructor(private readonly options: HubAuthOptions) {
    this.fetch = options.fetch ?? globalThis.fetch;
    this.now = options.now ?? Date.now;
  }

  async authenticate(headers: IncomingHttpHeaders): Promise<HubUser> {
    const token = tokenFromHeaders(headers);
    if (!token) throw new Unauthorized('Missing JupyterHub token: send "Authorization: token <your token>"');
    const model = await this.lookup(token);
    if (!model) throw new Unauthorized('Invalid or expired JupyterHub token');
    const scopes = model.scopes ?? [];
    const needed = requiredScopes(this.options.serviceName);
    if (!scopes.some((scope) => needed.includes(scope))) {
      throw new Forbidden(`Token for user ${model.name} lacks the scope ${needed[0]}; ask your Hub admin to grant it`);
    }
    return { name: model.name, groups: model.groups ?? [], admin: Boolean(model.admin), scopes, token };
  }

  private async lookup(token: string): Promise<HubModel | null> {
    const key = createHash('sha256').update(token).digest('hex');
    const cached = this.cache.get(key);
    if (cached && cached.expires > this.now()) return cached.model;
    const pending = this.inFlight.get(key);
    if (pending) return pending;
    const request = this.askHub(token)
      .then((model) => {
        if (this.options.cacheSeconds > 0) {
          this.cache.set(key, { model, expires: this.now() + this.options.cacheSeconds * 1000 });
          this.evictExpired();
        }
        return model;
      })
      .finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, request);
    return request;
  }

  private evictExpired(): void {
    if (this.cache.size < 10_000) return;
    const now = this.now();
    for (const [key, entry] of this.cache) if (entry.expires <= now) this.cache.delete(key);
  }

  private async askHub(token: string): Promise<HubModel | null> {
    let response: Response;
    try {
      response = await this.fetch(`${this.options.hubApiUrl}/user`, {
        headers: { authorization: `token ${token}` },
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
      });
    } catch (error) {
      throw new Unavailable(`JupyterHub API unreachable at ${this.options.hubApiUrl}: ${(error as Error).message}`);
    }
    // The Hub answers 403 (not 401) for unknown or expired tokens.
    if (response.status === 401 || response.status === 403) return null;
    if (!response.ok) throw new Unavailable(`JupyterHub API answered ${response.status}`);
    const model = (await response.json()) as HubModel;
    if (typeof model?.name !== 'string') throw new Unavailable('JupyterHub API returned no user name');
    return model;
  }
}

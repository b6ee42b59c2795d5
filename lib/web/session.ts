import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { EncryptJWT, jwtDecrypt, type JWTPayload } from 'jose';

/**
 * The browser's session, with no server-side store: the Hub token and the anti-CSRF token sealed
 * in one JWE cookie (dir + A256GCM: encrypted and authenticated, so the browser can neither read
 * nor alter it). The OAuth `state` travels the same way in a short-lived cookie of its own.
 */

export const sessionCookie = 'kbatch-session';
export const stateCookie = 'kbatch-oauth-state';
/** The page sends the session's anti-CSRF token in this header on every API call it makes. */
export const csrfHeader = 'x-kbatch-csrf';
/** Ten minutes to get through the Hub's login form, as HubOAuth allows (oauth_state_max_age). */
export const stateMaxAgeSeconds = 600;

export interface Session {
  /** The Hub OAuth token: never sent to the page's script, only inside the sealed cookie. */
  token: string;
  /** Random per login; the page echoes it in `x-kbatch-csrf`, which another site cannot read or forge. */
  csrf: string;
}

export interface LoginState {
  /** Echoed by the Hub as `state`; must match, so a callback this browser did not start is refused. */
  nonce: string;
  /** PKCE: the code is useless without it, even to someone who has the client secret. */
  verifier: string;
  /** Where to go after the login: a path under the service prefix. */
  next: string;
}

/** Each sealed value names its purpose, so a state cookie can never be replayed as a session and vice versa. */
type Purpose = 'kbatch-session' | 'kbatch-oauth-state';

export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

async function seal(payload: JWTPayload, purpose: Purpose, key: Uint8Array, maxAgeSeconds: number): Promise<string> {
  return new EncryptJWT(payload)
    .setProtectedHeader({ alg: 'dir', enc: 'A256GCM' })
    .setAudience(purpose)
    .setIssuedAt()
    .setExpirationTime(`${maxAgeSeconds}s`)
    .encrypt(key);
}

async function open(value: string | undefined, purpose: Purpose, key: Uint8Array, now?: Date): Promise<JWTPayload | undefined> {
  if (!value) return undefined;
  try {
    const { payload } = await jwtDecrypt(value, key, {
      audience: purpose,
      keyManagementAlgorithms: ['dir'],
      contentEncryptionAlgorithms: ['A256GCM'],
      currentDate: now,
    });
    return payload;
  } catch {
    // Expired, tampered with, sealed under another key: all mean "no session".
    return undefined;
  }
}

export function sealSession(session: Session, key: Uint8Array, maxAgeSeconds: number): Promise<string> {
  return seal({ t: session.token, c: session.csrf }, 'kbatch-session', key, maxAgeSeconds);
}

export async function openSession(value: string | undefined, key: Uint8Array, now?: Date): Promise<Session | undefined> {
  const payload = await open(value, 'kbatch-session', key, now);
  if (typeof payload?.t !== 'string' || typeof payload.c !== 'string') return undefined;
  return { token: payload.t, csrf: payload.c };
}

export function sealState(state: LoginState, key: Uint8Array): Promise<string> {
  return seal({ n: state.nonce, v: state.verifier, next: state.next }, 'kbatch-oauth-state', key, stateMaxAgeSeconds);
}

export async function openState(value: string | undefined, key: Uint8Array): Promise<LoginState | undefined> {
  const payload = await open(value, 'kbatch-oauth-state', key);
  if (typeof payload?.n !== 'string' || typeof payload.v !== 'string' || typeof payload.next !== 'string') return undefined;
  return { nonce: payload.n, verifier: payload.v, next: payload.next };
}

/** Constant-time, so the comparison does not tell an attacker how much of a guess was right. */
export function sameSecret(a: string | undefined, b: string): boolean {
  if (a === undefined) return false;
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

export function readCookies(headers: IncomingHttpHeaders): Map<string, string> {
  const cookies = new Map<string, string>();
  for (const part of (headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim();
    // The first one wins: a cookie set for a more specific path (sent first) cannot be shadowed.
    if (name && !cookies.has(name)) cookies.set(name, part.slice(eq + 1).trim());
  }
  return cookies;
}

export interface CookieOptions {
  /** The service prefix: the cookie is never sent to the Hub or to other services on the same host. */
  path: string;
  /** Set when the page was reached over https (directly or through a TLS-terminating proxy). */
  secure: boolean;
  /** Seconds; 0 deletes the cookie. */
  maxAge: number;
}

export function serializeCookie(name: string, value: string, options: CookieOptions): string {
  const parts = [`${name}=${value}`, `Path=${options.path}`, `Max-Age=${options.maxAge}`, 'HttpOnly', 'SameSite=Lax'];
  if (options.secure) parts.push('Secure');
  return parts.join('; ');
}

/** True when the browser reached us over https: TLS here, or a proxy in front saying so. */
export function isHttps(headers: IncomingHttpHeaders, encrypted: boolean): boolean {
  if (encrypted) return true;
  const forwarded = headers['x-forwarded-proto'];
  const proto = (Array.isArray(forwarded) ? forwarded[0] : forwarded)?.split(',')[0]?.trim().toLowerCase();
  return proto === 'https';
}

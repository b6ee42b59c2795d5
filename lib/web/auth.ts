import type { IncomingHttpHeaders } from 'node:http';
import type { Authenticator, User } from '../auth/types.ts';
import { Forbidden, Unauthorized } from '../http/errors.ts';
import { csrfHeader, openSession, readCookies, sameSecret, sessionCookie, type Session } from './session.ts';

/**
 * Lets the page's session cookie stand in for `Authorization: token …` on the API. The Hub token
 * inside the cookie goes to the same Authenticator as a header token would (same scope rule, same
 * cache), so a cookie grants exactly what its token grants and nothing more.
 *
 * A cookie is sent by the browser on any request to our path, including ones another site makes it
 * send, so a request authenticated by the cookie must also carry the session's anti-CSRF token in
 * `x-kbatch-csrf`. Only the page can: it reads the value from the HTML we served it, which another
 * origin cannot read. That holds for every method, reads included; a top-level navigation to an API
 * URL is therefore 401, and the page downloads logs through fetch.
 *
 * A request with an `Authorization` header is handed on untouched: API clients keep working as before.
 */
export class SessionAuthenticator implements Authenticator {
  constructor(
    private readonly inner: Authenticator,
    private readonly cookieKey: Uint8Array,
  ) {}

  async authenticate(headers: IncomingHttpHeaders): Promise<User> {
    if (headers.authorization) return this.inner.authenticate(headers);
    const sealed = readCookies(headers).get(sessionCookie);
    if (!sealed) return this.inner.authenticate(headers);
    const session = await openSession(sealed, this.cookieKey);
    if (!session) throw new Unauthorized('Your kbatch session has expired: reload the page to log in again');
    const sent = headers[csrfHeader];
    if (!sameSecret(Array.isArray(sent) ? sent[0] : sent, session.csrf)) {
      throw new Forbidden('Missing or wrong anti-CSRF token: requests with the session cookie must come from the kbatch page', 'Forbidden');
    }
    return this.userOf(session, headers);
  }

  /** The session's user, for the page itself (a navigation, which carries no anti-CSRF header). */
  async userOf(session: Session, headers: IncomingHttpHeaders = {}): Promise<User> {
    const { cookie: _cookie, [csrfHeader]: _csrf, ...rest } = headers;
    return this.inner.authenticate({ ...rest, authorization: `token ${session.token}` });
  }
}

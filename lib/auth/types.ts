import type { IncomingHttpHeaders } from 'node:http';

/**
 * The caller, resolved once per request by an Authenticator. Everything downstream reads the
 * namespace from here; nothing recomputes it from the name.
 */
export interface User {
  /** The exact Hub name; recorded as the owner of the namespace. */
  name: string;
  /** Where all of this user's objects live: `namespaceForUser(name)`, computed once in `resolveUser`. */
  namespace: string;
  groups: string[];
  admin: boolean;
  scopes: string[];
  /** The caller's own token; injected into jobs as JUPYTERHUB_API_TOKEN, as upstream kbatch does. */
  token: string;
}

export interface Authenticator {
  authenticate(headers: IncomingHttpHeaders): Promise<User>;
}

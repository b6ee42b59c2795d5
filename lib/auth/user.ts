import { namespaceForUser } from '../k8s/names.ts';
import type { User } from './types.ts';

/** Completes an identity with its namespace; every Authenticator builds its User here. */
export function resolveUser(identity: Omit<User, 'namespace'>): User {
  return { ...identity, namespace: namespaceForUser(identity.name) };
}

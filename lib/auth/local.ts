import { userInfo } from 'node:os';
import type { Authenticator, User } from './types.ts';
import { resolveUser } from './user.ts';

/**
 * For `npm start` on a machine without a Hub: every request acts as one local user. Only ever
 * used with the local backend and a loopback listener (enforced in config).
 */
export class LocalUserAuth implements Authenticator {
  private readonly user: User;

  constructor(username: string = userInfo().username) {
    this.user = resolveUser({ name: username, groups: [], admin: false, scopes: ['access:services'], token: '' });
  }

  async authenticate(): Promise<User> {
    return this.user;
  }
}

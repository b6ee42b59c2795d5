import { userInfo } from 'node:os';
import type { Authenticator, HubUser } from './hub.ts';

/**
 * For `npm start` on a machine without a Hub: every request acts as one local user. Only ever
 * used with the local backend and a loopback listener (enforced in config).
 */
export class LocalUserAuth implements Authenticator {
  constructor(private readonly username: string = userInfo().username) {}

  async authenticate(): Promise<HubUser> {
    return { name: this.username, groups: [], admin: false, scopes: ['access:services'], token: '' };
  }
}

import type { Authenticator } from '../auth/types.ts';
import type { Backend } from '../backend/types.ts';
import type { Settings } from '../config.ts';
import type { AdminConfig } from '../jobs/admin-config.ts';

/** Everything a handler touches, injected so tests can run handlers on a real cluster or the local backend. */
export interface Deps {
  settings: Settings;
  auth: Authenticator;
  backend: Backend;
  admin: AdminConfig;
}

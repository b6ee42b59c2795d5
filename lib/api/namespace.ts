import type { User } from '../auth/types.ts';
import { Forbidden } from '../http/errors.ts';
import { buildNamespace } from '../k8s/builders.ts';
import type { Deps } from './deps.ts';

/**
 * The namespace rule: kbatch acts in a user's namespace only if it records no other owner. The
 * mapping from names to namespaces is collision-free, so this guards against namespaces made by
 * something else (an admin, an older kbatch whose short hash could collide) under a user's name.
 * A namespace without an owner record (made by an admin or by upstream kbatch-proxy) is usable.
 */
export function refuseForeignNamespace(user: User, owner: string | null | undefined): void {
  if (owner === undefined || owner === null || owner === user.name) return;
  // The other owner's name is theirs to keep: the message does not repeat it.
  throw new Forbidden(
    `namespace ${user.namespace} is recorded as belonging to another Hub user; ask your Hub admin`,
    'NamespaceOwnedByOther',
  );
}

/** Before any request acts: reads included, so nobody lists, reads or deletes another user's jobs. */
export async function checkOwnNamespace(deps: Deps, user: User): Promise<void> {
  refuseForeignNamespace(user, await deps.backend.namespaceOwner(user.namespace));
}

/** Before anything is stored: creates the namespace with this user as owner, or checks the recorded one. */
export async function ensureOwnNamespace(deps: Deps, user: User): Promise<void> {
  refuseForeignNamespace(user, await deps.backend.ensureNamespace(buildNamespace(user)));
}

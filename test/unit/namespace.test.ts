import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { refuseForeignNamespace } from '../../lib/api/namespace.ts';
import { resolveUser } from '../../lib/auth/user.ts';
import { Forbidden } from '../../lib/http/errors.ts';

const alice = resolveUser({ name: 'alice', groups: [], admin: false, scopes: [], token: '' });

const rule = suite('refuseForeignNamespace: act only where no other owner is recorded');
rule("a namespace that does not exist yet, or has no owner record, or is alice's, is hers to use", () => {
  refuseForeignNamespace(alice, undefined);
  refuseForeignNamespace(alice, null);
  refuseForeignNamespace(alice, 'alice');
});
for (const other of ['bob', 'Alice', 'alice ', '']) {
  rule(`a namespace recorded as ${JSON.stringify(other)}'s is refused with NamespaceOwnedByOther, without naming the owner`, () => {
    try {
      refuseForeignNamespace(alice, other);
      assert.unreachable();
    } catch (error) {
      assert.instance(error, Forbidden);
      assert.is((error as Forbidden).status, 403);
      assert.is((error as Forbidden).reason, 'NamespaceOwnedByOther');
      if (other === 'bob') assert.not.match((error as Error).message, 'bob');
    }
  });
}
rule.run();

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mergeTemplate, parseProfiles } from '../../lib/jobs/admin-config.ts';

const admin = suite('admin config validation');
admin('profiles with unknown keys fail at start', () => {
  assert.throws(() => parseProfiles('p: {image: x, hostNetwork: true}'), /unknown key "hostNetwork"/);
});
admin('mergeTemplate follows upstream rules', () => {
  assert.equal(mergeTemplate({ a: [1], b: { c: 1, d: 2 }, e: 1 }, { a: [2], b: { c: 3 }, e: 2 }), { a: [1, 2], b: { c: 3, d: 2 }, e: 2 });
});
admin.run();

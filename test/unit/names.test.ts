import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { jobNameFor, namespaceForUser, userLabelValue } from '../../lib/k8s/names.ts';

const namespaces = suite('namespaceForUser matches upstream kbatch-proxy');
const vectors: [string, string][] = [
  ['test', 'kbatch-test'],
  ['TEST', 'kbatch-test--94ee059'],
  ['test123test', 'kbatch-test123test'],
  ['test-test', 'kbatch-test-test'],
  ['test--test', 'kbatch-test-test--a5fc82f'],
  ['taugspurger@microsoft.com', 'kbatch-taugspurger-microsoft-com--69c4de7'],
  ['Alice.Smith@x.org', 'kbatch-alice-smith-x-org--017c535'],
  ['a_b', 'kbatch-a-b--648fa9b'],
];
for (const [user, expected] of vectors) {
  namespaces(`${user} -> ${expected}`, () => assert.is(namespaceForUser(user), expected));
}
namespaces.run();

const labelsSuite = suite('userLabelValue is always a valid label value');
for (const user of ['alice', 'Alice.Smith@x.org', '-leading', 'x'.repeat(200), 'ünïcode']) {
  labelsSuite(`for ${user.slice(0, 20)}`, () => {
    const value = userLabelValue(user);
    assert.ok(value.length <= 63, value);
    assert.match(value, /^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$/);
  });
}
labelsSuite.run();

const jobNames = suite('jobNameFor');
jobNames('appends a 5-character suffix after one dash', () => {
  assert.match(jobNameFor('my-job', 'abcde'), /^my-job-abcde$/);
  assert.match(jobNameFor('my-job-', 'abcde'), /^my-job-abcde$/);
  assert.match(jobNameFor('train'), /^train-[a-z0-9]{5}$/);
});
jobNames.run();

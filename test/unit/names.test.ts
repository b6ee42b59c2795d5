import { randomBytes, randomInt } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { jobNameFor, namespaceForUser, podsOfJobSelector, userLabelValue } from '../../lib/k8s/names.ts';

const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const labelValue = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

function assertValid(name: string): string {
  const namespace = namespaceForUser(name);
  assert.ok(namespace.length <= 63, `${namespace} is longer than 63`);
  assert.match(namespace, dnsLabel);
  const label = userLabelValue(namespace);
  assert.ok(label.length <= 63, `${label} is longer than 63`);
  assert.match(label, labelValue);
  return namespace;
}

const plain = suite('namespaceForUser keeps upstream kbatch-proxy namespaces for safe names');
const unchanged: [string, string][] = [
  ['test', 'kbatch-test'],
  ['test123test', 'kbatch-test123test'],
  ['test-test', 'kbatch-test-test'],
  ['alice', 'kbatch-alice'],
  ['x'.repeat(40), `kbatch-${'x'.repeat(40)}`],
];
for (const [user, expected] of unchanged) plain(`${user} -> ${expected}`, () => assert.is(assertValid(user), expected));
plain.run();

const hashed = suite('namespaceForUser hashes every other name with a full-strength hash');
const crafted = [
  // The example: under the old 28-bit hash it got the namespace of first.last.
  '-__first.@.~last_~._',
  'first.last',
  'TEST',
  'Test',
  'test--test',
  'a_b',
  'taugspurger@microsoft.com',
  'Alice.Smith@x.org',
  '田中太郎',
  '😀',
  '-',
  '...',
  '.',
  '_',
  ' ',
  'Zoë',
  'zoe\u0308',
  'x'.repeat(41),
  'x'.repeat(10_000),
  'test-',
  '-test',
  '0',
  'kbatch',
  'user',
  'user--abc',
  `user--${'a'.repeat(26)}`,
];
for (const user of crafted) {
  hashed(`${JSON.stringify(user.slice(0, 30))} maps to a valid label`, () => {
    const namespace = assertValid(user);
    if (user.length > 40 || !dnsLabel.test(user) || user.includes('--')) assert.match(namespace, /--[a-z2-7]{26}$/);
  });
}
hashed('the crafted name no longer shares the namespace of first.last', () => {
  assert.is.not(namespaceForUser('-__first.@.~last_~._'), namespaceForUser('first.last'));
});
hashed('no two of the crafted names share a namespace', () => {
  const seen = new Map<string, string>();
  for (const user of [...crafted, ...unchanged.map(([u]) => u)]) {
    const namespace = namespaceForUser(user);
    assert.is(seen.get(namespace), undefined, `${JSON.stringify(user)} and ${JSON.stringify(seen.get(namespace))} share ${namespace}`);
    seen.set(namespace, user);
  }
});
hashed('a plain name cannot imitate a hashed namespace: names with a double dash are hashed', () => {
  const victim = namespaceForUser('田中太郎'); // kbatch-user--<hash>
  const imitation = namespaceForUser(victim.slice('kbatch-'.length));
  assert.is.not(imitation, victim);
  assert.match(imitation, /--[a-z2-7]{26}$/);
});
hashed('case, accents and normal forms are different names', () => {
  assert.is.not(namespaceForUser('Zoë'), namespaceForUser('zoe\u0308'));
  assert.is.not(namespaceForUser('ZOE'), namespaceForUser('zoe'));
});
hashed('ill-formed strings are refused rather than hashed alike', () => {
  assert.throws(() => namespaceForUser('\uD800'));
  assert.throws(() => namespaceForUser(''));
});
hashed.run();

/** Random names from several alphabets: ASCII symbols, letters, digits, dashes, BMP and astral characters. */
function randomName(): string {
  const pools = ['abc', 'az09', '-', '.', '_@~ ', 'ABZ', 'éü', '田中', '😀', 'ӑ'];
  const length = randomInt(1, randomInt(2) ? 8 : 70);
  let name = '';
  for (let i = 0; i < length; i++) {
    const pool = pools[randomInt(pools.length)]!;
    name += [...pool][randomInt([...pool].length)];
  }
  return name;
}

const property = suite('namespaceForUser over many random names');
property('every result is a valid DNS label of at most 63 characters, and no two names share one', () => {
  const seen = new Map<string, string>();
  const names = new Set<string>();
  while (names.size < 50_000) names.add(randomName());
  // Near misses of plain names, which the two branches must keep apart.
  for (let i = 0; i < 5_000; i++) names.add(randomBytes(randomInt(1, 30)).toString('hex').replace(/[0-4]/g, '-'));
  for (const name of names) {
    const namespace = assertValid(name);
    const other = seen.get(namespace);
    assert.is(other, undefined, `${JSON.stringify(name)} and ${JSON.stringify(other)} share ${namespace}`);
    seen.set(namespace, name);
  }
});
property.run();

const selectors = suite('podsOfJobSelector');
selectors('selects on the label the Job controller sets', () => {
  assert.is(podsOfJobSelector('train-abcde'), 'batch.kubernetes.io/job-name=train-abcde');
});
selectors.run();

const jobNames = suite('jobNameFor');
jobNames('appends a 5-character suffix after one dash', () => {
  assert.match(jobNameFor('my-job', 'abcde'), /^my-job-abcde$/);
  assert.match(jobNameFor('my-job-', 'abcde'), /^my-job-abcde$/);
  assert.match(jobNameFor('train'), /^train-[a-z0-9]{5}$/);
});
jobNames.run();

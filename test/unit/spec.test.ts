import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseJobSpec } from '../../lib/jobs/spec.ts';
import { rejects } from './field-errors.ts';

const spec = suite('parseJobSpec (native allow-list)');
spec('accepts every allowed field', () => {
  const parsed = parseJobSpec({
    name: 'train',
    image: 'python:3.12',
    command: ['python', 'main.py'],
    args: ['--epochs', '3'],
    env: { A: '1', B: 2 },
    profile: 'gpu',
    resources: { requests: { cpu: '500m', memory: '1Gi' }, limits: { 'nvidia.com/gpu': '1' } },
    ttlSecondsAfterFinished: 60,
    backoffLimit: 2,
    parallelism: 2,
    completions: 4,
    labels: { team: 'ml' },
  });
  assert.is(parsed.name, 'train');
  assert.equal(parsed.env, { A: '1', B: '2' });
  assert.is(parsed.completions, 4);
});
spec('requires a name', () => void rejects({ image: 'x' }, 'name'));
spec('refuses unknown fields, naming them', () => void rejects({ name: 'a', namespace: 'kube-system' }, 'namespace'));
spec('refuses serviceAccountName', () => void rejects({ name: 'a', serviceAccountName: 'admin' }, 'serviceAccountName'));
spec('refuses hostNetwork and privileged', () => {
  rejects({ name: 'a', hostNetwork: true }, 'hostNetwork');
  rejects({ name: 'a', securityContext: { privileged: true } }, 'securityContext');
});
spec('refuses invalid names', () => {
  rejects({ name: 'List-files' }, 'name');
  rejects({ name: 'a'.repeat(41) }, 'name');
});
spec('refuses bad quantities and env names', () => {
  rejects({ name: 'a', resources: { requests: { cpu: 'lots' } } }, 'resources.requests.cpu');
  rejects({ name: 'a', env: { 'BAD NAME': 'x' } }, 'env.BAD NAME');
  rejects({ name: 'a', resources: { claims: [{ name: 'gpu' }] } }, 'resources.claims');
});
spec(
  'refuses reserved label keys',
  () => void rejects({ name: 'a', labels: { 'kbatch.jupyter.org/username': 'bob' } }, 'labels.kbatch.jupyter.org/username'),
);
spec('parallelism needs completions and cannot exceed them', () => {
  rejects({ name: 'a', parallelism: 3 }, 'parallelism');
  rejects({ name: 'a', parallelism: 3, completions: 2 }, 'parallelism');
  assert.is(parseJobSpec({ name: 'a', parallelism: 2, completions: 4 }).parallelism, 2);
});
spec.run();

/** [what is wrong, input (merged over a valid spec), the field the 400 names, words its message holds]. */
const hostile: [string, Record<string, unknown>, string, string?][] = [
  ['a list where the spec goes', { name: ['a'] }, 'name', 'must be a string'],
  ['a number as the image', { image: 42 }, 'image', 'must be a string'],
  ['an image with spaces', { image: 'python 3' }, 'image', 'without spaces'],
  ['a string as the command', { command: 'python main.py' }, 'command', 'must be a list'],
  ['a number inside the command', { command: ['python', 3] }, 'command[1]', 'must be a string'],
  ['a list where env goes', { env: [['A', '1']] }, 'env', 'must be an object'],
  ['an object as an env value', { env: { A: { b: 1 } } }, 'env.A', 'must be a string'],
  ['__proto__ as an env name', { env: JSON.parse('{"__proto__": "x"}') }, 'env.__proto__', 'not allowed'],
  ['a list where labels go', { labels: ['team'] }, 'labels', 'must be an object'],
  ['__proto__ as a label key', { labels: JSON.parse('{"__proto__": {"polluted": "yes"}}') }, 'labels.__proto__'],
  ['an invalid label value', { labels: { team: 'a b' } }, 'labels.team', 'label value'],
  ['a negative number as a label value', { labels: { team: -1 } }, 'labels.team', 'label value'],
  ['1e308 as a label value', { labels: { team: 1e308 } }, 'labels.team', 'label value'],
  ['a label prefix over 253 characters', { labels: { [`${'a'.repeat(254)}/b`]: 'x' } }, `labels.${'a'.repeat(254)}/b`, 'label key'],
  ['a label name over 63 characters', { labels: { [`x.org/${'a'.repeat(64)}`]: 'x' } }, `labels.x.org/${'a'.repeat(64)}`, 'label key'],
  ['a list where resources go', { resources: ['cpu'] }, 'resources', 'must be an object'],
  ['a list where requests go', { resources: { requests: ['cpu'] } }, 'resources.requests', 'must be an object'],
  ['__proto__ as a resource name', { resources: { requests: JSON.parse('{"__proto__": "1"}') } }, 'resources.requests.__proto__'],
  ['a fractional integer', { backoffLimit: 1.5 }, 'backoffLimit', 'must be an integer'],
  ['a negative integer', { backoffLimit: -1 }, 'backoffLimit', 'between 0 and 100'],
  ['a string integer', { completions: '3' }, 'completions', 'must be an integer'],
  ['1e308 as completions', { completions: 1e308 }, 'completions', 'between 1 and 10000'],
  ['100,000 completions', { completions: 100_000 }, 'completions'],
  ['an alias with a bad value', { retries: -1 }, 'retries', 'between 0 and 100'],
  ['an alias and its field together', { retries: 1, backoffLimit: 2 }, 'retries', 'not both'],
  ['a negative TTL', { ttlSecondsAfterFinished: -5 }, 'ttlSecondsAfterFinished'],
  ['a zero deadline', { activeDeadlineSeconds: 0 }, 'activeDeadlineSeconds'],
  ['a boolean profile', { profile: true }, 'profile', 'must be a string'],
  ['a huge cpu quantity string', { resources: { requests: { cpu: '1e308' } } }, 'resources.requests.cpu', 'not a valid quantity'],
  ['a negative quantity', { resources: { requests: { memory: '-1Gi' } } }, 'resources.requests.memory', 'negative'],
  ['half a GPU', { resources: { limits: { 'nvidia.com/gpu': '0.5' } } }, 'resources.limits.nvidia.com/gpu', 'whole number'],
  [
    'a limit below its request',
    { resources: { requests: { memory: '2Gi' }, limits: { memory: '1Gi' } } },
    'resources.limits.memory',
    'at least its request',
  ],
  [
    'a limit below its request in other units',
    { resources: { requests: { cpu: '1.5' }, limits: { cpu: '1400m' } } },
    'resources.limits.cpu',
    'at least its request',
  ],
  ['an object as a toleration', { tolerations: { key: 'a' } }, 'tolerations', 'must be a list'],
  ['an unknown toleration operator', { tolerations: [{ key: 'a', operator: 'Matches' }] }, 'tolerations[0].operator', 'Exists or Equal'],
  [
    'an unknown toleration field',
    { tolerations: [{ key: 'a', operator: 'Exists', nodeName: 'x' }] },
    'tolerations[0].nodeName',
    'not an allowed field',
  ],
  [
    'an unknown selector operator',
    { nodeAffinityRequired: [{ matchExpressions: [{ key: 'a', operator: 'Like' }] }] },
    'nodeAffinityRequired[0].matchExpressions[0].operator',
  ],
  ['a selector term field that does not exist', { nodeAffinityRequired: [{ nodeName: 'x' }] }, 'nodeAffinityRequired[0].nodeName'],
  ['too many env entries', { env: Object.fromEntries(Array.from({ length: 201 }, (_, i) => [`E${i}`, 'x'])) }, 'env', 'at most 200'],
  ['too many labels', { labels: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`l${i}`, 'x'])) }, 'labels', 'at most 32'],
  [
    'env values over the Secret budget',
    { env: Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`E${i}`, 'x'.repeat(120 * 1024)])) },
    'env',
    'at most',
  ],
  ['too many arguments', { args: Array.from({ length: 1001 }, () => 'x') }, 'args', 'at most 1000'],
  ['an over-long argument', { args: ['x'.repeat(128 * 1024 + 1)] }, 'args[0]', 'at most'],
  ['a prototype key at the top', JSON.parse('{"__proto__": {"image": "evil"}}'), '__proto__', 'not an allowed field'],
  ['constructor at the top', { constructor: 'x' }, 'constructor', 'not an allowed field'],
];
const types = suite('parseJobSpec refuses hostile and careless input, naming the field');
for (const [what, patch, field, words] of hostile) {
  types(what, () => {
    const message = rejects({ name: 'a', image: 'python', ...patch }, field);
    if (words) assert.ok(message.includes(words), message);
  });
}
types('a spec that is not an object', () => {
  for (const input of [[], 'job', 3, null, true]) rejects(input, 'spec');
});
types('a deeply nested value is refused without recursion trouble', () => {
  let deep: unknown = 'x';
  for (let i = 0; i < 100_000; i++) deep = [deep];
  rejects({ name: 'a', command: deep }, 'spec');
  let object: unknown = {};
  for (let i = 0; i < 100_000; i++) object = { a: object };
  rejects({ name: 'a', labels: object }, 'spec');
});
types('a __proto__ key never reaches a prototype', () => {
  try {
    parseJobSpec(JSON.parse('{"name": "a", "env": {"__proto__": {"polluted": "yes"}}}'));
  } catch {
    // refused, as above
  }
  assert.is(({} as Record<string, unknown>).polluted, undefined);
});
types('null, [] and {} count as absent', () => {
  assert.equal(parseJobSpec({ name: 'a', image: null, command: [], env: {}, resources: { requests: null }, tolerations: [] }), {
    name: 'a',
  });
});
types('YAML numbers and booleans are read as their text', () => {
  const parsed = parseJobSpec({ name: 'a', env: { N: 2, B: true }, labels: { v: 1 }, resources: { requests: { cpu: 2 } } });
  assert.equal(parsed.env, { N: '2', B: 'true' });
  assert.equal(parsed.labels, { v: '1' });
  assert.equal(parsed.resources, { requests: { cpu: '2' } });
});
types('aliases are read as their fields', () => {
  const parsed = parseJobSpec({ name: 'a', retries: 2, ttl: 60, array: 4 });
  assert.equal([parsed.backoffLimit, parsed.ttlSecondsAfterFinished, parsed.completions], [2, 60, 4]);
});
types('scheduling in the Python spelling is read too', () => {
  const parsed = parseJobSpec({
    name: 'a',
    tolerations: [{ key: 'k', operator: 'Exists', effect: 'NoExecute', toleration_seconds: 5 }],
    nodeAffinityRequired: [{ match_expressions: [{ key: 'a', operator: 'In', values: ['b'] }] }],
  });
  assert.equal(parsed.tolerations, [{ key: 'k', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 5 }]);
  assert.equal(parsed.nodeAffinityRequired, [{ matchExpressions: [{ key: 'a', operator: 'In', values: ['b'] }] }]);
});
types('the longest valid label key is accepted', () => {
  const key = `${'a'.repeat(253)}/${'b'.repeat(63)}`;
  assert.equal(parseJobSpec({ name: 'a', labels: { [key]: 'x' } }).labels, { [key]: 'x' });
});
types('limits equal to requests, in different units, are fine', () => {
  parseJobSpec({ name: 'a', resources: { requests: { cpu: '1', memory: '1Gi' }, limits: { cpu: '1000m', memory: '1073741824' } } });
});
types.run();

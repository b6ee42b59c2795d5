import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BadRequest } from '../../lib/http/errors.ts';
import { camelCase, camelCaseKeys, pythonTimestamp, snakeCase, toUpstreamWire } from '../../lib/k8s/wire.ts';

const wire = suite('upstream wire format');
wire('snake_case like the Python kubernetes client', () => {
  assert.is(snakeCase('ttlSecondsAfterFinished'), 'ttl_seconds_after_finished');
  assert.is(snakeCase('podIP'), 'pod_ip');
  assert.is(snakeCase('podIPs'), 'pod_i_ps');
  assert.is(snakeCase('continue'), '_continue');
  assert.is(snakeCase('apiVersion'), 'api_version');
});
wire('timestamps as Python isoformat with +00:00', () => {
  assert.is(pythonTimestamp(new Date('2021-11-03T13:49:41Z')), '2021-11-03T13:49:41+00:00');
  assert.is(pythonTimestamp(new Date('2021-11-03T13:49:41.123Z')), '2021-11-03T13:49:41.123000+00:00');
});
wire('never converts user keys inside labels, annotations or env data', () => {
  const out = toUpstreamWire({
    metadata: { labels: { someLabel: 'x' }, creationTimestamp: '2021-11-03T13:49:41Z' },
    spec: { nodeSelector: { fooBar: '1' } },
  }) as Record<string, any>;
  assert.equal(out.metadata.labels, { someLabel: 'x' });
  assert.is(out.metadata.creation_timestamp, '2021-11-03T13:49:41+00:00');
  assert.equal(out.spec.node_selector, { fooBar: '1' });
});
wire('camelCaseKeys reverses it', () => {
  assert.equal(camelCaseKeys({ binary_data: { my_key: 'x' }, generate_name: 'a', pod_i_ps: [] }), {
    binaryData: { my_key: 'x' },
    generateName: 'a',
    podIPs: [],
  });
});
wire('prototype keys stay plain keys and never become prototypes', () => {
  const out = camelCaseKeys(JSON.parse('{"__proto__": {"host_network": true}, "constructor": {"a_b": 1}}')) as Record<string, unknown>;
  assert.equal(Object.keys(out), ['__proto__', 'constructor']);
  assert.is(Object.getPrototypeOf(out), Object.prototype);
  assert.is((out as { hostNetwork?: unknown }).hostNetwork, undefined);
  assert.is(camelCase('constructor'), 'constructor');
  assert.is(camelCase('toString'), 'toString');
  assert.is(camelCase('__proto__'), '__proto__');
});
wire('a value nested beyond any Kubernetes object is a 400, not a stack overflow', () => {
  let deep: unknown = {};
  for (let i = 0; i < 100_000; i++) deep = { a_b: deep };
  assert.throws(
    () => camelCaseKeys(deep),
    (error: unknown) => error instanceof BadRequest && (error as BadRequest).status === 400,
  );
  let list: unknown = [];
  for (let i = 0; i < 100_000; i++) list = [list];
  assert.throws(
    () => camelCaseKeys({ items: list }),
    (error: unknown) => error instanceof BadRequest,
  );
});
wire.run();

/** What toUpstreamWire was before it became one walk: a JSON copy with revived timestamps, then renamed keys. */
function referenceUpstreamWire(value: unknown): unknown {
  const freeForm = new Set([
    'labels',
    'annotations',
    'data',
    'binaryData',
    'binary_data',
    'stringData',
    'string_data',
    'nodeSelector',
    'node_selector',
    'limits',
    'requests',
    'matchLabels',
    'match_labels',
    'capacity',
    'allocatable',
    'volumeAttributes',
    'volume_attributes',
  ]);
  const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
  const mapValues = (v: unknown): unknown =>
    !v || typeof v !== 'object' || Array.isArray(v)
      ? v
      : Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, x instanceof Date ? pythonTimestamp(x) : x]));
  const convert = (v: unknown): unknown => {
    if (v instanceof Date) return pythonTimestamp(v);
    if (Array.isArray(v)) return v.map(convert);
    if (v && typeof v === 'object')
      return Object.fromEntries(
        Object.entries(v as Record<string, unknown>)
          .filter(([, x]) => x !== undefined)
          .map(([k, x]) => [snakeCase(k), freeForm.has(k) ? mapValues(x) : convert(x)]),
      );
    return v;
  };
  return convert(JSON.parse(JSON.stringify(value), (_k, v: unknown) => (typeof v === 'string' && rfc3339.test(v) ? new Date(v) : v)));
}

const oneWalk = suite('upstream wire format in one walk: byte for byte what the JSON round trip gave');
const modelJob = {
  apiVersion: 'batch/v1',
  kind: 'Job',
  metadata: {
    name: 'j',
    creationTimestamp: new Date('2026-11-26T03:14:40Z'),
    labels: { someLabel: 'x', 'kbatch.jupyter.org/user': 'alice' },
    annotations: { 'kbatch.jupyter.org/submitted-at': '2026-11-26T03:14:40.123Z', note: 'plain' },
    managedFields: [
      {
        manager: 'm',
        time: new Date('2026-11-26T03:14:41.5Z'),
        fieldsV1: { 'f:metadata': { 'f:labels': { '.': {}, 'f:someLabel': {} } } },
      },
    ],
    deletionTimestamp: undefined,
  },
  spec: {
    backoffLimit: 0,
    selector: { matchLabels: { 'controller-uid': 'u' } },
    template: {
      spec: {
        containers: [
          {
            name: 'job',
            command: ['python', '2026-11-26T03:14:40Z'],
            env: [{ name: 'A', valueFrom: { secretKeyRef: { name: 's', key: 'A' } } }],
            resources: { limits: { cpu: '1' }, requests: { memory: '1Gi' } },
          },
        ],
        nodeSelector: { fooBar: '1' },
      },
    },
  },
  status: {
    startTime: new Date('2026-11-26T03:14:40Z'),
    conditions: [{ type: 'Complete', lastTransitionTime: '2026-11-26T03:15:00Z' }],
    ready: null,
    active: undefined,
  },
};
oneWalk('a client-node model and the same job as raw JSON', () => {
  for (const value of [modelJob, JSON.parse(JSON.stringify(modelJob)), { items: [modelJob, modelJob], metadata: { continue: null } }])
    assert.is(JSON.stringify(toUpstreamWire(value)), JSON.stringify(referenceUpstreamWire(value)));
});
oneWalk('what JSON does to odd values: undefined, functions, NaN, toJSON, Buffers, invalid dates', () => {
  const odd = {
    a: undefined,
    f: () => 1,
    n: Number.NaN,
    i: Number.POSITIVE_INFINITY,
    list: [undefined, () => 1, Number.NaN, 'x', new Date(Number.NaN)],
    custom: { toJSON: () => ({ innerKey: '2026-01-01T00:00:00Z' }) },
    buffer: Buffer.from('hi'),
    bad: new Date(Number.NaN),
  };
  assert.is(JSON.stringify(toUpstreamWire(odd)), JSON.stringify(referenceUpstreamWire(odd)));
});
oneWalk('free-form maps: user keys kept, nested values as JSON, a timestamp where a map belongs', () => {
  const maps = {
    labels: { camelKey: '2026-01-01T00:00:00Z', gone: undefined },
    annotations: { nested: { deepKey: '2026-01-01T00:00:00Z' }, list: ['2026-01-01T00:00:00Z'] },
    data: '2026-01-01T00:00:00Z',
    binaryData: ['a'],
    limits: null,
    requests: () => 1,
    capacity: new Date('2026-01-01T00:00:00Z'),
  };
  assert.is(JSON.stringify(toUpstreamWire(maps)), JSON.stringify(referenceUpstreamWire(maps)));
});
oneWalk('prototype keys stay plain keys', () => {
  const hostile = JSON.parse('{"__proto__": {"isAdmin": true}, "labels": {"__proto__": "x"}, "constructor": {"aB": 1}}');
  const out = toUpstreamWire(hostile) as Record<string, unknown>;
  assert.is(JSON.stringify(out), JSON.stringify(referenceUpstreamWire(hostile)));
  assert.is(Object.getPrototypeOf(out), Object.prototype);
  assert.is((out as { isAdmin?: unknown }).isAdmin, undefined);
});
oneWalk('a value nested beyond any Kubernetes object is a 400', () => {
  let deep: unknown = {};
  for (let i = 0; i < 100; i++) deep = { aB: deep };
  assert.throws(
    () => toUpstreamWire(deep),
    (error: unknown) => error instanceof BadRequest,
  );
});
oneWalk.run();

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

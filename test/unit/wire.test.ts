import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { camelCaseKeys, pythonTimestamp, snakeCase, toUpstreamWire } from '../../lib/k8s/wire.ts';

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
  const out = toUpstreamWire({ metadata: { labels: { someLabel: 'x' }, creationTimestamp: '2021-11-03T13:49:41Z' }, spec: { nodeSelector: { fooBar: '1' } } }) as Record<string, any>;
  assert.equal(out.metadata.labels, { someLabel: 'x' });
  assert.is(out.metadata.creation_timestamp, '2021-11-03T13:49:41+00:00');
  assert.equal(out.spec.node_selector, { fooBar: '1' });
});
wire('camelCaseKeys reverses it', () => {
  assert.equal(camelCaseKeys({ binary_data: { my_key: 'x' }, generate_name: 'a', pod_i_ps: [] }), { binaryData: { my_key: 'x' }, generateName: 'a', podIPs: [] });
});
wire.run();

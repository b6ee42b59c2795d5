import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { idempotencyKeyFrom } from '../../lib/api/operations.ts';

const header = suite('Idempotency-Key header');
header('is optional', () => {
  assert.is(idempotencyKeyFrom({}), undefined);
});
header('takes 1 to 255 visible ASCII characters, as a UUID or a base64 token', () => {
  for (const key of ['3f2b6c1e-8d4a-4c3b-9a57-1e2d3c4b5a69', 'a', 'abc+/=_:.~', 'x'.repeat(255)]) assert.is(idempotencyKeyFrom({ 'idempotency-key': key }), key);
});
header('anything else is a 400 naming the header', () => {
  for (const key of ['', 'x'.repeat(256), 'with space', 'tab\t', 'ünïcode', 'line\nbreak']) {
    assert.throws(() => idempotencyKeyFrom({ 'idempotency-key': key }), (error: Error & { status?: number; field?: string }) => error.status === 400 && error.field === 'Idempotency-Key');
  }
});
header.run();

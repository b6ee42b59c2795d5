import * as assert from 'uvu/assert';
import { BadRequest } from '../../lib/http/errors.ts';
import { parseJobSpec } from '../../lib/jobs/spec.ts';

/** Asserts that parsing fails with a 400 naming `field`, and returns its message. */
export function rejects(input: unknown, field: string, parse: (v: unknown) => unknown = parseJobSpec): string {
  try {
    parse(input);
  } catch (error) {
    assert.instance(error, BadRequest);
    assert.is((error as BadRequest).field, field, (error as Error).message);
    // A human sentence that starts with the field it names.
    assert.ok((error as Error).message.startsWith(`${field}: `), (error as Error).message);
    return (error as Error).message;
  }
  assert.unreachable(`expected a 400 naming ${field}`);
  return '';
}

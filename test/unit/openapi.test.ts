import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { openApiDocument } from '../../lib/api/openapi.ts';
import { JobSpecSchema, UpstreamCronJobSchema, UpstreamJobSchema } from '../../lib/jobs/schemas.ts';

const doc = openApiDocument('/services/kbatch/');
const schemas = doc.components.schemas as Record<string, Record<string, any>>;

const docs = suite('OpenAPI request bodies are the validation schemas');
docs('the JobSpec documented is the one the server validates with', () => {
  assert.is(schemas.JobSpec, JobSpecSchema);
  assert.is(schemas.UpstreamJobBody!.properties.job, UpstreamJobSchema);
  assert.is(schemas.UpstreamCronJobBody!.properties.job, UpstreamCronJobSchema);
});
docs('bounds and closed objects are in the document, not only in code', () => {
  const properties = schemas.JobSpec!.properties;
  assert.is(schemas.JobSpec!.additionalProperties, false);
  assert.equal([properties.completions.minimum, properties.completions.maximum], [1, 10_000]);
  assert.is(properties.backoffLimit.type, 'integer');
  assert.is(properties.env.maxProperties, 200);
});
docs('every component schema is valid JSON Schema 2020-12', () => {
  const ajv = new Ajv2020({ strict: true, strictTypes: false, validateFormats: false });
  ajv.addKeyword('x-message');
  const { JobDetail, ...standalone } = schemas;
  void JobDetail;
  for (const [name, schema] of Object.entries(standalone)) {
    assert.not.throws(() => ajv.compile(schema), name);
  }
});
docs('the document is plain JSON (TypeBox markers do not leak)', () => {
  const text = JSON.stringify(doc);
  assert.equal(JSON.parse(text).components.schemas.JobSpec.required, ['name']);
  assert.ok(text.length < 200_000);
});
docs.run();

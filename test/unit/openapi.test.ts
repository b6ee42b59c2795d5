import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { openApiDocument } from '../../lib/api/openapi.ts';
import type { Static } from 'typebox';
import { JobDetailSchema, JobSpecSchema, JobSummarySchema, UpstreamCronJobSchema, UpstreamJobSchema } from '../../lib/jobs/schemas.ts';
import { jobDetail, type JobDetail as JobDetailView, type JobSummary } from '../../lib/jobs/views.ts';

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
  for (const [name, schema] of Object.entries(schemas)) {
    assert.not.throws(() => ajv.compile(schema), name);
  }
});
docs('the document is plain JSON (TypeBox markers do not leak)', () => {
  const text = JSON.stringify(doc);
  assert.equal(JSON.parse(text).components.schemas.JobSpec.required, ['name']);
  assert.ok(text.length < 200_000);
});
docs('a job detail as the server builds it matches the documented response', () => {
  const job = {
    metadata: {
      name: 'train-abcde',
      namespace: 'kbatch-alice',
      creationTimestamp: new Date('2026-01-01T00:00:00Z'),
      labels: { team: 'ml' },
    },
    spec: { completions: 2, parallelism: 2, template: { spec: { containers: [{ name: 'job', image: 'python', command: ['python'] }] } } },
    status: { active: 1, startTime: new Date('2026-01-01T00:00:01Z') },
  };
  const pod = {
    metadata: { name: 'train-abcde-x', annotations: { 'batch.kubernetes.io/job-completion-index': '0' } },
    spec: { nodeName: 'n1', containers: [] },
    status: { phase: 'Running', startTime: new Date('2026-01-01T00:00:02Z'), containerStatuses: [{ name: 'job', state: { running: {} } }] },
  };
  const detail = JSON.parse(JSON.stringify(jobDetail(job as never, [pod as never])));
  const ajv = new Ajv2020({ strict: true, strictTypes: false, validateFormats: false });
  const validate = ajv.compile({ ...JobDetailSchema, additionalProperties: false });
  assert.ok(validate(detail), JSON.stringify(validate.errors));
});
docs.run();

// The documented responses list exactly the fields of the view types (a compile error otherwise).
type SameKeys<A, B> = [keyof A] extends [keyof B] ? ([keyof B] extends [keyof A] ? true : never) : never;
const summaryKeys: SameKeys<JobSummary, Static<typeof JobSummarySchema>> = true;
const detailKeys: SameKeys<JobDetailView, Static<typeof JobDetailSchema>> = true;
void [summaryKeys, detailKeys];

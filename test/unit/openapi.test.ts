import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { Deps } from '../../lib/api/deps.ts';
import { documentedPath, openApiDocument } from '../../lib/api/openapi.ts';
import { apiRoutes, routesFor, type TargetName } from '../../lib/app.ts';
import { webRoutes } from '../../lib/web/routes.ts';
import type { Static } from 'typebox';
import { JobDetailSchema, JobSpecSchema, JobSummarySchema, UpstreamCronJobSchema, UpstreamJobSchema } from '../../lib/jobs/schemas.ts';
import { jobDetail, type JobDetail as JobDetailView, type JobSummary } from '../../lib/jobs/views.ts';

// Building the route table reads the prefix and the backend's kind; handlers are never called here.
const deps = { settings: { prefix: '/services/kbatch/' }, backend: { kind: 'local' } } as Deps;
const doc = openApiDocument('/services/kbatch/', apiRoutes(deps));
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

const table = suite('OpenAPI paths are the route table');
const operationsOf = (paths: Record<string, Record<string, unknown>>) =>
  Object.entries(paths).flatMap(([path, methods]) => Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`));
// The router ignores a trailing slash; the document keeps the spelling clients call.
const withoutTrailingSlash = (operation: string) => operation.replace(/([^ /])\/$/, '$1');
const key = (route: { method: string; path: string }) => withoutTrailingSlash(`${route.method} ${documentedPath(route.path)}`);
table('every route a function serves, but the web page, is documented', () => {
  const web = new Set(webRoutes(deps).map(key));
  for (const target of ['all', 'submit', 'uploads', 'jobs'] as TargetName[]) {
    for (const route of routesFor(target, deps)) {
      if (web.has(key(route))) continue;
      assert.ok(route.doc, `${target}: ${route.method} ${route.path} has no doc`);
    }
  }
});
table('the document lists exactly the API routes, each once', () => {
  const served = apiRoutes(deps).map(key).sort();
  assert.equal(new Set(served).size, served.length, 'a route is defined twice');
  assert.equal(operationsOf(doc.paths).map(withoutTrailingSlash).sort(), served);
});
table('every function serves a documented subset, and together they serve the whole document', () => {
  const documented = new Set(apiRoutes(deps).map(key));
  const union = new Set<string>();
  for (const target of ['submit', 'uploads', 'jobs'] as TargetName[]) {
    for (const route of routesFor(target, deps).filter((route) => route.doc)) {
      assert.ok(documented.has(key(route)), `${target}: ${key(route)}`);
      union.add(key(route));
    }
  }
  assert.equal([...union].sort(), [...documented].sort());
});
table('upstream paths keep the spelling upstream clients call', () => {
  for (const path of ['/jobs/', '/jobs/logs/{name}/', '/pods/', '/pods/logs/{name}/', '/cronjobs/', '/profiles/']) {
    assert.ok(doc.paths[path], path);
  }
  assert.equal(Object.keys(doc.paths['/jobs/']!).sort(), ['get', 'post']);
});
table.run();

// The documented responses list exactly the fields of the view types (a compile error otherwise).
type SameKeys<A, B> = [keyof A] extends [keyof B] ? ([keyof B] extends [keyof A] ? true : never) : never;
const summaryKeys: SameKeys<JobSummary, Static<typeof JobSummarySchema>> = true;
const detailKeys: SameKeys<JobDetailView, Static<typeof JobDetailSchema>> = true;
void [summaryKeys, detailKeys];

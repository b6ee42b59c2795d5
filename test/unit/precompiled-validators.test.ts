/**
 * The bundles validate request bodies with Ajv's standalone code made at build time
 * (scripts/bundle.ts precompiledValidatorsSource), the sources with Ajv compiling the same schemas
 * at run time (lib/jobs/validation.ts). Both must say exactly the same about every body: valid or
 * not, and the same errors (the 400's field and sentence are made from them). Bodies: a valid one
 * per schema and, at every path of it, wrong types, out-of-range values, an unknown key, a missing key.
 */
import type { ValidateFunction } from 'ajv/dist/2020.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { TSchema } from 'typebox';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { JobSpecSchema, UpstreamCronJobSchema, UpstreamJobSchema } from '../../lib/jobs/schemas.ts';
import { createAjv, schemaKey } from '../../lib/jobs/validation.ts';
import { precompiledValidatorsSource } from '../../scripts/bundle.ts';

const root = resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'kbatch-validators-'));
process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
const file = join(dir, 'precompiled.mjs');
// In the bundle esbuild resolves the runtime helpers' require(); here a require from the project does.
writeFileSync(
  file,
  `import { createRequire } from 'node:module';\nconst require = createRequire(${JSON.stringify(join(root, 'package.json'))});\n${precompiledValidatorsSource()}`,
);
const { precompiledValidator } = (await import(pathToFileURL(file).href)) as {
  precompiledValidator(key: string): ValidateFunction | undefined;
};

const podSpec = {
  restartPolicy: 'Never',
  containers: [
    {
      name: 'job',
      image: 'alpine',
      command: ['sh', '-c'],
      args: ['python main.py'],
      env: [{ name: 'A', value: '1' }],
      resources: { limits: { memory: '1G' }, requests: { cpu: '1' } },
      workingDir: '/code',
    },
  ],
  tolerations: [{ effect: 'NoSchedule', key: 'k', operator: 'Equal', value: 'v' }],
};
const jobBody = { backoffLimit: 0, ttlSecondsAfterFinished: 300, template: { metadata: { labels: { a: 'b' } }, spec: podSpec } };
const cases: [string, TSchema, unknown][] = [
  [
    'the native job spec',
    JobSpecSchema,
    {
      name: 'my-job',
      image: 'alpine:3',
      command: ['python', 'main.py'],
      args: ['--n', '1'],
      env: { A: '1', B: 2, C: true },
      resources: { limits: { cpu: '1', memory: '1G' }, requests: { cpu: '500m' } },
      ttlSecondsAfterFinished: 60,
      backoffLimit: 1,
      labels: { team: 'a' },
      tolerations: [{ key: 'k', operator: 'Equal', value: 'v', effect: 'NoSchedule' }],
      completions: 2,
      parallelism: 1,
    },
  ],
  ['the upstream Job', UpstreamJobSchema, { apiVersion: 'batch/v1', kind: 'Job', metadata: { generateName: 'my-job-' }, spec: jobBody }],
  [
    'the upstream CronJob',
    UpstreamCronJobSchema,
    { apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'c' }, spec: { schedule: '* * * * *', jobTemplate: { spec: jobBody } } },
  ],
];

const wrongValues: unknown[] = [42, -1, 1.5, 'x', '', 'a b', 'a'.repeat(300), true, null, [], ['x'], [1], {}, { bogus: 1 }];

/** The body with the value at `path` replaced (undefined: removed). */
function withAt(body: unknown, path: (string | number)[], value: unknown): unknown {
  if (!path.length) return value;
  const [head, ...rest] = path;
  if (Array.isArray(body)) return body.map((item, i) => (i === head ? withAt(item, rest, value) : item));
  const copy = { ...(body as Record<string, unknown>) };
  const next = withAt(copy[head as string], rest, value);
  if (next === undefined) delete copy[head as string];
  else copy[head as string] = next;
  return copy;
}

/** Every path in the body, objects' and arrays' included. */
function paths(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  const own: (string | number)[][] = prefix.length ? [prefix] : [];
  if (Array.isArray(value)) return [...own, ...value.flatMap((item, i) => paths(item, [...prefix, i]))];
  if (value && typeof value === 'object') return [...own, ...Object.entries(value).flatMap(([k, v]) => paths(v, [...prefix, k]))];
  return own;
}

function mutations(body: unknown): unknown[] {
  const out: unknown[] = [body, withAt(body, ['bogus'], 1), 42, null, []];
  for (const path of paths(body)) {
    out.push(withAt(body, path, undefined));
    for (const wrong of wrongValues) out.push(withAt(body, path, wrong));
    if (typeof path.at(-1) === 'string') out.push(withAt(body, [...path.slice(0, -1), 'bogus key!'], 'x'));
  }
  return out;
}

/** What a 400 is made from: the errors with their schema parts as JSON. */
const verdict = (validate: ValidateFunction, body: unknown) => {
  const valid = validate(body);
  return { valid, errors: JSON.parse(JSON.stringify(validate.errors ?? [])) as unknown };
};

const same = suite('precompiled validators (the bundles) and Ajv at run time (the sources) agree');
for (const [name, schema, body] of cases) {
  same(`${name}: the same verdict and errors for every body`, () => {
    const precompiled = precompiledValidator(schemaKey(schema));
    assert.ok(precompiled, 'the build precompiled this schema');
    const compiled = createAjv().compile(schema as object);
    assert.ok(compiled(body), `the valid ${name} is valid: ${JSON.stringify(compiled.errors)}`);
    const bodies = mutations(body);
    assert.ok(bodies.length > 50);
    for (const candidate of bodies) assert.equal(verdict(precompiled!, candidate), verdict(compiled, candidate), JSON.stringify(candidate));
  });
}
same('a schema the build did not precompile is looked up as absent (its checker compiles it)', () => {
  assert.is(precompiledValidator(schemaKey({ type: 'string' } as TSchema)), undefined);
});
same.run();

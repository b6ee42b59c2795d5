import packageJson from '../../package.json' with { type: 'json' };
import { errorReasons } from '../contract.ts';
import type { RouteDefinition, RouteDoc } from '../http/router.ts';
import {
  ErrorSchema,
  JobDetailSchema,
  JobSpecSchema,
  JobSummarySchema,
  UploadSchema,
  UpstreamCronJobBodySchema,
  UpstreamJobBodySchema,
} from '../jobs/schemas.ts';

/**
 * Named schemas. Request bodies are the very schemas the server validates with (lib/jobs/schemas.ts);
 * wherever a route's doc holds one of these objects, the document refers to it by name.
 */
const schemas: Record<string, object> = {
  Error: {
    ...ErrorSchema,
    properties: {
      ...ErrorSchema.properties,
      reason: { enum: [...errorReasons], description: 'Machine-readable; clients branch on it' },
    },
  },
  JobSpec: JobSpecSchema,
  UpstreamJobBody: UpstreamJobBodySchema,
  UpstreamCronJobBody: UpstreamCronJobBodySchema,
  JobSummary: JobSummarySchema,
  JobDetail: JobDetailSchema,
  Upload: UploadSchema,
};
const schemaNames = new Map<unknown, string>(Object.entries(schemas).map(([name, schema]) => [schema, name]));

/** Copies a route's doc into plain JSON, a named schema becoming a `$ref` to it. */
function withRefs(value: unknown): unknown {
  const name = schemaNames.get(value);
  if (name) return { $ref: `#/components/schemas/${name}` };
  if (Array.isArray(value)) return value.map(withRefs);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, withRefs(item)]));
  return value;
}

/** What any route behind a Hub token may answer besides its own statuses. */
const authErrors = [400, 401, 403, 404, 503];

/** `/jobs/:name` as OpenAPI spells it, `/jobs/{name}`. */
export function documentedPath(path: string): string {
  return path.replace(/:(\w+)/g, '{$1}');
}

function operation(path: string, doc: RouteDoc) {
  const error = { $ref: '#/components/responses/Error' };
  const parameters = [
    ...[...path.matchAll(/:(\w+)/g)].map(([, name]) => ({ name, in: 'path', required: true, schema: { type: 'string' } })),
    ...Object.entries(doc.query ?? {}).map(([name, schema]) => ({ name, in: 'query', schema })),
  ];
  const responses: Record<number, unknown> = {};
  for (const [status, response] of Object.entries(doc.responses)) {
    responses[Number(status)] =
      typeof response === 'string'
        ? { description: response }
        : { description: response.description, content: { 'application/json': { schema: response.schema } } };
  }
  for (const status of [...(doc.auth ? authErrors : []), ...(doc.errors ?? [])]) responses[status] = error;
  const content = (body: Record<string, object>) => Object.fromEntries(Object.entries(body).map(([type, schema]) => [type, { schema }]));
  return withRefs({
    summary: doc.summary,
    ...(doc.auth ? { security: [{ hubToken: [] }] } : {}),
    ...(parameters.length ? { parameters } : {}),
    ...(doc.body ? { requestBody: { content: content(doc.body) } } : {}),
    responses,
  });
}

/** `paths` of the document: one operation per documented route. */
export function documentedPaths(routes: readonly RouteDefinition[]): Record<string, Record<string, unknown>> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    if (!route.doc) continue;
    (paths[documentedPath(route.path)] ??= {})[route.method.toLowerCase()] = operation(route.path, route.doc);
  }
  return paths;
}

/** The HTTP API, described for clients from the routes that serve it. */
export function openApiDocument(prefix: string, routes: readonly RouteDefinition[]) {
  return {
    openapi: '3.1.0',
    info: {
      title: 'kbatch',
      version: packageJson.version,
      description: 'Submit batch jobs to Kubernetes as a JupyterHub user. Authenticate with "Authorization: token <JupyterHub API token>".',
    },
    servers: [{ url: prefix }],
    components: {
      securitySchemes: {
        hubToken: {
          type: 'apiKey',
          in: 'header',
          name: 'Authorization',
          description: '"token <JupyterHub API token>" or "Bearer <token>"',
        },
      },
      responses: {
        Error: { description: 'An error', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
      },
      schemas,
    },
    paths: documentedPaths(routes),
  };
}

/**
 * GET /openapi.json. `routes` is every API route, whichever function serves it (the document
 * covers the whole API though only the jobs function serves it); it is read on the first request.
 */
export function openApiRoute(prefix: string, routes: () => readonly RouteDefinition[]): RouteDefinition {
  let document: ReturnType<typeof openApiDocument> | undefined;
  return {
    method: 'GET',
    path: '/openapi.json',
    doc: { summary: 'This document', responses: { 200: 'OpenAPI 3.1' } },
    handler: async () => ({ json: (document ??= openApiDocument(prefix, routes())) }),
  };
}

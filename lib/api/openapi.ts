import packageJson from '../../package.json' with { type: 'json' };
import { errorReasons } from '../contract.ts';
import {
  ErrorSchema,
  JobDetailSchema,
  JobSpecSchema,
  JobSummarySchema,
  UploadSchema,
  UpstreamCronJobSchema,
  UpstreamJobSchema,
  upstreamSubmitBody,
} from '../jobs/schemas.ts';

/** The HTTP API, described for clients and checked against the live routes in the tests. */
export function openApiDocument(prefix: string) {
  const error = { $ref: '#/components/responses/Error' };
  const auth = [{ hubToken: [] }];
  const nameParam = { name: 'name', in: 'path', required: true, schema: { type: 'string' } };
  const errors = { 400: error, 401: error, 403: error, 404: error, 503: error };
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
      schemas: {
        // Request bodies are the very schemas the server validates with (lib/jobs/schemas.ts).
        Error: {
          ...ErrorSchema,
          properties: {
            ...ErrorSchema.properties,
            reason: { enum: [...errorReasons], description: 'Machine-readable; clients branch on it' },
          },
        },
        JobSpec: JobSpecSchema,
        UpstreamJobBody: upstreamSubmitBody(UpstreamJobSchema),
        UpstreamCronJobBody: upstreamSubmitBody(UpstreamCronJobSchema),
        JobSummary: JobSummarySchema,
        JobDetail: JobDetailSchema,
        Upload: UploadSchema,
      },
    },
    paths: {
      '/': { get: { summary: 'Liveness', responses: { 200: { description: '{"message": "kbatch"}' } } } },
      '/authorized': {
        get: { summary: 'Who am I', security: auth, responses: { 200: { description: 'name, groups, namespace' }, ...errors } },
      },
      '/profiles/': { get: { summary: 'Admin-defined job profiles', responses: { 200: { description: 'profile name to settings' } } } },
      '/openapi.json': { get: { summary: 'This document', responses: { 200: { description: 'OpenAPI 3.1' } } } },
      '/api/v1/uploads': {
        post: {
          summary: 'Upload code (streamed multipart: one "archive" part with a zip/tar/tar.gz, or one part per file, filename = path)',
          security: auth,
          requestBody: { content: { 'multipart/form-data': { schema: { type: 'object' } } } },
          responses: {
            201: { description: 'Upload stored', content: { 'application/json': { schema: { $ref: '#/components/schemas/Upload' } } } },
            413: error,
            ...errors,
          },
        },
      },
      '/api/v1/jobs': {
        post: {
          summary: 'Submit a job (JSON JobSpec, or multipart with a "spec" field plus code parts)',
          security: auth,
          requestBody: {
            content: {
              'application/json': { schema: { $ref: '#/components/schemas/JobSpec' } },
              'multipart/form-data': {
                schema: {
                  type: 'object',
                  required: ['spec'],
                  properties: {
                    spec: {
                      type: 'string',
                      description: 'The JobSpec as JSON (same schema)',
                      contentMediaType: 'application/json',
                      contentSchema: { $ref: '#/components/schemas/JobSpec' },
                    },
                  },
                  additionalProperties: { type: 'string', format: 'binary', description: 'Code: an "archive" part, or one part per file' },
                },
              },
            },
          },
          responses: {
            201: { description: 'Created', content: { 'application/json': { schema: { $ref: '#/components/schemas/JobDetail' } } } },
            409: error,
            413: error,
            422: error,
            ...errors,
          },
        },
        get: {
          summary: 'List jobs, newest first',
          security: auth,
          parameters: [
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 500, default: 50 } },
            { name: 'continue', in: 'query', schema: { type: 'string' } },
            { name: 'allUsers', in: 'query', description: "every user's jobs; needs the admin scope (KBATCH_ADMIN_SCOPE), else 403", schema: { type: 'boolean' } },
          ],
          responses: { 200: { description: '{items: JobSummary[], continue: string|null}' }, ...errors },
        },
      },
      '/api/v1/jobs/{name}': {
        get: {
          summary: 'Show a job with its pods and conditions',
          security: auth,
          parameters: [nameParam],
          responses: {
            200: { description: 'JobDetail', content: { 'application/json': { schema: { $ref: '#/components/schemas/JobDetail' } } } },
            ...errors,
          },
        },
        delete: {
          summary: 'Delete a job (foreground: pods first, then owned Secret/ConfigMap)',
          security: auth,
          parameters: [nameParam],
          responses: { 200: { description: '{deleted}' }, ...errors },
        },
      },
      '/api/v1/jobs/{name}/logs': {
        get: {
          summary: 'Job logs as text; follow streams until the pods finish',
          security: auth,
          parameters: [
            nameParam,
            { name: 'follow', in: 'query', schema: { type: 'boolean' } },
            { name: 'pod', in: 'query', schema: { type: 'string' } },
            { name: 'since', in: 'query', schema: { type: 'string', format: 'date-time' }, description: 'Resume after this time' },
            { name: 'timestamps', in: 'query', schema: { type: 'boolean' } },
            { name: 'tail', in: 'query', schema: { type: 'integer' } },
          ],
          responses: { 200: { description: 'text/plain log lines' }, ...errors },
        },
      },
      '/jobs/': {
        get: {
          summary: 'Upstream kbatch-proxy: list jobs (V1JobList, snake_case)',
          security: auth,
          responses: { 200: { description: 'JobList' }, ...errors },
        },
        post: {
          summary: 'Upstream kbatch-proxy: submit {job: V1Job, code?: V1ConfigMap with a base64 zip}',
          security: auth,
          requestBody: { content: { 'application/json': { schema: { $ref: '#/components/schemas/UpstreamJobBody' } } } },
          responses: { 200: { description: 'created V1Job' }, ...errors },
        },
      },
      '/jobs/{name}': {
        get: {
          summary: 'Upstream: show job',
          security: auth,
          parameters: [nameParam],
          responses: { 200: { description: 'V1Job' }, ...errors },
        },
        delete: {
          summary: 'Upstream: delete job',
          security: auth,
          parameters: [nameParam],
          responses: { 200: { description: 'V1Status' }, ...errors },
        },
      },
      '/jobs/logs/{name}/': {
        get: {
          summary: 'Upstream: job logs (?stream=true follows)',
          security: auth,
          parameters: [nameParam],
          responses: { 200: { description: 'text' }, ...errors },
        },
      },
      '/pods/': {
        get: { summary: 'Upstream: list pods (?job_name=)', security: auth, responses: { 200: { description: 'PodList' }, ...errors } },
      },
      '/pods/{name}': {
        get: {
          summary: 'Upstream: show pod',
          security: auth,
          parameters: [nameParam],
          responses: { 200: { description: 'V1Pod' }, ...errors },
        },
      },
      '/pods/logs/{name}/': {
        get: {
          summary: 'Upstream: pod logs (?stream=true follows)',
          security: auth,
          parameters: [nameParam],
          responses: { 200: { description: 'text' }, ...errors },
        },
      },
      '/cronjobs/': {
        get: { summary: 'Upstream: list cronjobs', security: auth, responses: { 200: { description: 'CronJobList' }, ...errors } },
        post: {
          summary: 'Upstream: submit {job: V1CronJob, code?}; 501 on the local backend',
          security: auth,
          requestBody: { content: { 'application/json': { schema: { $ref: '#/components/schemas/UpstreamCronJobBody' } } } },
          responses: { 200: { description: 'created V1CronJob' }, 501: error, ...errors },
        },
      },
      '/cronjobs/{name}': {
        get: {
          summary: 'Upstream: show cronjob',
          security: auth,
          parameters: [nameParam],
          responses: { 200: { description: 'V1CronJob' }, ...errors },
        },
        delete: {
          summary: 'Upstream: delete cronjob (foreground: its jobs and pods first)',
          security: auth,
          parameters: [nameParam],
          responses: { 200: { description: 'V1Status' }, ...errors },
        },
      },
    },
  };
}

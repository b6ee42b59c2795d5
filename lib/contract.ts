/**
 * The contract between the server and its clients (the kbatch CLI, the web page): paths, the error
 * body and its machine-readable reasons, and the marker written into a stream that fails after its
 * status line was sent. Imported by both sides, so neither matches on the other's prose.
 */

/** Paths relative to the service's URL (which ends with a slash). */
export const apiPaths = {
  health: 'healthz',
  openapi: 'openapi.json',
  authorized: 'authorized',
  profiles: 'profiles',
  uploads: 'api/v1/uploads',
  jobs: 'api/v1/jobs',
  job: (name: string) => `api/v1/jobs/${encodeURIComponent(name)}`,
  jobLogs: (name: string) => `api/v1/jobs/${encodeURIComponent(name)}/logs`,
  /** GET: the job's outputs as an OutputList; DELETE: removes them. They outlive the Job (its TTL). */
  jobOutputs: (name: string) => `api/v1/jobs/${encodeURIComponent(name)}/outputs`,
  /** GET: one output file's bytes (honours Range: bytes=a-b, answers 206). `path` is relative to the job's outputs. */
  jobOutputFile: (name: string, path: string) => `api/v1/jobs/${encodeURIComponent(name)}/outputs/file?path=${encodeURIComponent(path)}`,
  /** GET: every output file as one tar.gz stream (application/gzip). */
  jobOutputsArchive: (name: string) => `api/v1/jobs/${encodeURIComponent(name)}/outputs/archive`,
  /** POST: `suspend` or `resume` a cronjob's schedule, or `run` it now. */
  cronJobAction: (name: string, action: 'suspend' | 'resume' | 'run') => `api/v1/cronjobs/${encodeURIComponent(name)}/${action}`,
} as const;

/**
 * Why a request failed, in every JSON error body. Clients branch on these, never on `detail`.
 * Append only: a client built against an older list must keep understanding the ones it knows.
 */
export const errorReasons = [
  /** 400: the request is malformed or a field is invalid (`field` names it). */
  'BadRequest',
  /** 400: an uploaded archive is corrupt, unsupported or unsafe (traversal, links, devices). */
  'InvalidArchive',
  /** 401: no token, or the Hub does not know it. */
  'Unauthorized',
  /** 403: the token lacks the service's scope, or the caller may not do this. */
  'Forbidden',
  /** 403: the namespace the caller maps to is recorded as belonging to another Hub user. */
  'NamespaceOwnedByOther',
  /** 404: the job (or pod, cronjob, upload) does not exist for this caller. */
  'NotFound',
  /** 404: the job exists but has no pods yet. */
  'NoPods',
  /** 404: no route at this path: the URL is not a kbatch API. */
  'NoRoute',
  /** 405 */
  'MethodNotAllowed',
  /** 409 */
  'Conflict',
  /** 413: a request body over the limit of its route. */
  'PayloadTooLarge',
  /** 413: uploaded code over the upload limits (bytes or files). */
  'UploadTooLarge',
  /** 415: a body whose content type (or content encoding) the route does not take. */
  'UnsupportedMediaType',
  /** 422: Kubernetes refused the object. */
  'Invalid',
  /** 501 */
  'NotImplemented',
  /** 502: a dependency answered with something unusable. */
  'BadGateway',
  /** 503: the Hub or the Kubernetes API cannot be reached, or the server is shutting down. */
  'Unavailable',
  /** 500: a fault of the service itself (including a refusal Kubernetes gave the service's own identity). */
  'Internal',
  /** 416: a Range outside the output file (the body's `detail` says its size). */
  'RangeNotSatisfiable',
] as const;

export type ErrorReason = (typeof errorReasons)[number];

/** Every error answer, from every layer. `detail` is what the upstream Python CLI prints. */
export interface ErrorBody {
  detail: string;
  status: number;
  reason: ErrorReason;
  /** The request field at fault, when there is one. */
  field?: string;
}

/** One file a job wrote under its outputs directory ($KBATCH_OUTPUTS_DIR, /outputs on Kubernetes). */
export interface OutputFile {
  /** Relative to the job's outputs directory, "/"-separated. */
  path: string;
  size: number;
  /** Last modification, ISO 8601. */
  modified: string;
}

/** GET jobOutputs: every regular file, sorted by path. A job that wrote nothing (or whose outputs were removed) has none. */
export interface OutputList {
  job: string;
  files: OutputFile[];
  totalBytes: number;
}

export function isErrorBody(value: unknown): value is ErrorBody {
  if (typeof value !== 'object' || value === null) return false;
  const body = value as Record<string, unknown>;
  return typeof body.detail === 'string' && typeof body.status === 'number' && typeof body.reason === 'string';
}

/**
 * Written into a text stream that fails after its 200 was sent, followed by the reason and a
 * newline; the connection is then cut without the final chunk. A client that sees it resumes
 * (log follow) or reports the message.
 */
export const streamAbortMarker = '[kbatch] stream aborted: ';

/** Query flag of DELETE job: `?outputs=true` removes the job's outputs too (they outlive the Job otherwise). */
export const deleteOutputsQuery = 'outputs';

/** Header a client sets on a submit so a retried request returns the first job instead of a second one. */
export const idempotencyKeyHeader = 'idempotency-key';

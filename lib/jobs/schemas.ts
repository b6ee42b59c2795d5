import Type, { type Static, type TSchema } from 'typebox';
import { notebookLimits, parameterNamePattern } from './notebook.ts';

/**
 * One schema per request body. They are JSON Schema (TypeBox builds them), so the same objects give
 * the validation (lib/jobs/validation.ts, Ajv), the TypeScript types (Static<>) and the OpenAPI
 * document (lib/api/openapi.ts). `x-message` is the sentence a 400 gives when a pattern fails.
 *
 * Caps on sizes and counts are deliberately generous for real jobs and small against abuse; the
 * request body itself is capped at read time.
 */

/** Requests and limits as read: quantities as their text (a YAML number becomes its string). */
export interface ResourceSpec {
  requests?: Record<string, string>;
  limits?: Record<string, string>;
}

export type Toleration = Static<typeof Toleration>;
export type NodeSelectorTerm = Static<typeof NodeSelectorTerm>;

export const limits = {
  nameLength: 253,
  imageLength: 1024,
  /** command and args: items, and characters per item (an inline `sh -c` script fits). */
  commandItems: 1000,
  commandItemLength: 128 * 1024,
  envEntries: 200,
  envValueLength: 128 * 1024,
  /** All env values together end up in one Secret, whose limit is 1 MiB. */
  envTotalBytes: 512 * 1024,
  labels: 32,
  annotations: 64,
  resourceNames: 16,
  tolerations: 16,
  nodeSelectorTerms: 8,
  selectorRequirements: 16,
  selectorValues: 64,
  uploadReferenceLength: 8192,
  /** A year, for deadlines and TTLs (the admin's TTL cap applies on top). */
  maxSeconds: 365 * 24 * 3600,
  maxRetries: 100,
  /** An array of 10,000 tasks, at most 1,000 at a time (Kubernetes allows 100,000 indexes). */
  maxCompletions: 10_000,
  maxParallelism: 1000,
} as const;

export const patterns = {
  envName: '^[-._a-zA-Z][-._a-zA-Z0-9]*$',
  // A qualified name: an optional DNS-subdomain prefix of at most 253 characters, then a name of at most 63.
  labelKey:
    '^((?=[^/]{1,253}/)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$',
  labelValue: '^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$',
  resourceName:
    '^((?=[^/]{1,253}/)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$',
  /** The shape only; lib/k8s/quantity.ts parses the value exactly. */
  quantity: '^[+-]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$',
  image: '^\\S+$',
} as const;

/** `__proto__` as a key would reach an object's prototype in any code that assigns by key. */
const notPrototypeKey = { not: { const: '__proto__' } };

/** A user-keyed map: every key checked by `keys`, every value by `value`, whatever the key looks like. */
function keyedMap<V extends TSchema>(value: V, keys: { pattern: string; maxLength: number; 'x-message': string }, maxProperties: number) {
  return Type.Record(Type.String(), value, {
    additionalProperties: value,
    propertyNames: { allOf: [notPrototypeKey, { type: 'string', ...keys }] },
    maxProperties,
  });
}

/** YAML files turn `cpu: 1` and `DEBUG: true` into numbers and booleans; they are read as their text. */
const Scalar = (maxLength: number, extra: Record<string, unknown> = {}) =>
  Type.Union([Type.String({ maxLength, ...extra }), Type.Number(), Type.Boolean()], { 'x-message': 'must be a string' });

const Integer = (minimum: number, maximum: number, description?: string) =>
  Type.Integer({ minimum, maximum, ...(description ? { description } : {}) });

const StringList = (maxItems: number, maxLength: number) => Type.Array(Type.String({ maxLength }), { maxItems });

export const QuantityMap = keyedMap(
  Type.Union(
    [
      Type.String({ maxLength: 64, pattern: patterns.quantity, 'x-message': 'is not a valid quantity (e.g. 500m, 2, 1.5Gi)' }),
      Type.Number(),
    ],
    {
      'x-message': 'must be a quantity such as 500m, 2 or 1.5Gi',
    },
  ),
  { pattern: patterns.resourceName, maxLength: 253, 'x-message': 'is not a valid resource name' },
  limits.resourceNames,
);

export const Resources = Type.Object(
  { requests: Type.Optional(QuantityMap), limits: Type.Optional(QuantityMap) },
  { additionalProperties: false, description: 'Per pod; each value at most the admin maximum, limits at least requests' },
);

export const Toleration = Type.Object(
  {
    key: Type.Optional(Type.String({ maxLength: 317 })),
    operator: Type.Optional(Type.Union([Type.Literal('Exists'), Type.Literal('Equal')], { 'x-message': 'must be Exists or Equal' })),
    value: Type.Optional(Type.String({ maxLength: 63, pattern: patterns.labelValue, 'x-message': 'is not a valid taint value' })),
    effect: Type.Optional(
      Type.Union([Type.Literal('NoSchedule'), Type.Literal('PreferNoSchedule'), Type.Literal('NoExecute')], {
        'x-message': 'must be NoSchedule, PreferNoSchedule or NoExecute',
      }),
    ),
    tolerationSeconds: Type.Optional(Integer(0, limits.maxSeconds)),
  },
  { additionalProperties: false },
);

export const SelectorRequirement = Type.Object(
  {
    key: Type.String({ minLength: 1, maxLength: 317 }),
    operator: Type.Union(
      ['In', 'NotIn', 'Exists', 'DoesNotExist', 'Gt', 'Lt'].map((op) => Type.Literal(op)),
      { 'x-message': 'must be one of In, NotIn, Exists, DoesNotExist, Gt, Lt' },
    ),
    values: Type.Optional(StringList(limits.selectorValues, 63)),
  },
  { additionalProperties: false },
);

export const NodeSelectorTerm = Type.Object(
  {
    matchExpressions: Type.Optional(Type.Array(SelectorRequirement, { maxItems: limits.selectorRequirements })),
    matchFields: Type.Optional(Type.Array(SelectorRequirement, { maxItems: limits.selectorRequirements })),
  },
  { additionalProperties: false },
);

const EnvMap = keyedMap(
  Scalar(limits.envValueLength),
  { pattern: patterns.envName, maxLength: 256, 'x-message': 'is not a valid environment variable name' },
  limits.envEntries,
);

export const LabelMap = keyedMap(
  Scalar(63, { pattern: patterns.labelValue, 'x-message': 'is not a valid label value' }),
  { pattern: patterns.labelKey, maxLength: 317, 'x-message': 'is not a valid label key' },
  limits.labels,
);

const parameterName = { pattern: parameterNamePattern, maxLength: 64, 'x-message': 'is not a Python identifier (letters, digits, _)' };

/** Notebook parameters: any JSON value (null, [] and {} included; the sizes are checked in lib/jobs/spec.ts). */
const ParameterMap = keyedMap(Type.Unknown({ description: 'Any JSON value' }), parameterName, notebookLimits.parameters);
const SweepMap = keyedMap(
  Type.Array(Type.Unknown(), {
    minItems: 1,
    maxItems: notebookLimits.sweepValues,
    'x-message': `must be a list of 1 to ${notebookLimits.sweepValues} values`,
  }),
  parameterName,
  notebookLimits.sweepAxes,
);

/** The native job spec: the JSON body of POST api/v1/jobs and the `spec` field of its multipart form. */
export const JobSpecSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: limits.nameLength, description: 'Name prefix; the server appends a random suffix' }),
    image: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: limits.imageLength,
        pattern: patterns.image,
        'x-message': 'must be a non-empty image reference without spaces',
      }),
    ),
    command: Type.Optional(StringList(limits.commandItems, limits.commandItemLength)),
    args: Type.Optional(StringList(limits.commandItems, limits.commandItemLength)),
    env: Type.Optional(EnvMap),
    profile: Type.Optional(Type.String({ minLength: 1, maxLength: 253, description: 'An admin-defined profile (GET profiles/)' })),
    resources: Type.Optional(Resources),
    ttlSecondsAfterFinished: Type.Optional(Integer(0, limits.maxSeconds, 'Alias: ttl. Capped by the admin setting')),
    backoffLimit: Type.Optional(Integer(0, limits.maxRetries, 'Alias: retries. Retries before the job fails')),
    activeDeadlineSeconds: Type.Optional(Integer(1, limits.maxSeconds)),
    parallelism: Type.Optional(Integer(1, limits.maxParallelism, 'Needs completions; at most completions')),
    completions: Type.Optional(
      Integer(1, limits.maxCompletions, 'Alias: array. More than 1 makes an indexed job array (JOB_COMPLETION_INDEX)'),
    ),
    labels: Type.Optional(LabelMap),
    tolerations: Type.Optional(
      Type.Array(Toleration, { maxItems: limits.tolerations, description: 'Only keys the admin allows, or exactly those of a profile' }),
    ),
    nodeAffinityRequired: Type.Optional(
      Type.Array(NodeSelectorTerm, {
        maxItems: limits.nodeSelectorTerms,
        description: 'Only node label keys the admin allows, or exactly the terms of a profile; no matchFields',
      }),
    ),
    upload: Type.Optional(
      Type.String({ minLength: 1, maxLength: limits.uploadReferenceLength, description: 'Reference returned by POST api/v1/uploads' }),
    ),
    notebook: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: notebookLimits.pathLength,
        description: 'A .ipynb under /code to run with papermill (the image must have papermill); no command or args with it',
      }),
    ),
    parameters: Type.Optional(
      Type.Unsafe<Record<string, unknown>>({
        ...ParameterMap,
        description: 'Notebook parameters: name (a Python identifier) to a JSON value',
      }),
    ),
    sweep: Type.Optional(
      Type.Unsafe<Record<string, unknown[]>>({
        ...SweepMap,
        description: 'Name to a list of values: an indexed job array over the cartesian product, one parameter set per index',
      }),
    ),
  },
  { additionalProperties: false },
);
export type JobSpecInput = Static<typeof JobSpecSchema>;

/** Aliases the native spec accepts for its fields (the CLI's flag names). */
export const jobSpecAliases = { retries: 'backoffLimit', ttl: 'ttlSecondsAfterFinished', array: 'completions' } as const;

/*
 * The upstream kbatch-proxy bodies: a V1Job / V1CronJob as the Python client's `to_dict()` gives it.
 * They are checked after their keys are camelCased and every null, [] and {} is dropped (the
 * client sends every field of the model, most null), so the schemas use Kubernetes' spelling and
 * list only what a kbatch job may hold: everything else present is refused, naming its path.
 */

const Annotations = keyedMap(
  Type.String({ maxLength: 64 * 1024 }),
  { pattern: '^.+$', maxLength: 317, 'x-message': 'is not a valid annotation key' },
  limits.annotations,
);

const UpstreamMetadata = Type.Object(
  {
    name: Type.Optional(Type.String({ maxLength: limits.nameLength })),
    generateName: Type.Optional(Type.String({ maxLength: limits.nameLength })),
    labels: Type.Optional(LabelMap),
    annotations: Type.Optional(Annotations),
  },
  { additionalProperties: false },
);

export const UpstreamContainer = Type.Object(
  {
    name: Type.Optional(Type.String({ maxLength: 63 })),
    image: Type.Optional(Type.String({ maxLength: limits.imageLength })),
    command: Type.Optional(StringList(limits.commandItems, limits.commandItemLength)),
    args: Type.Optional(StringList(limits.commandItems, limits.commandItemLength)),
    env: Type.Optional(
      Type.Array(
        Type.Object(
          { name: Type.String({ minLength: 1, maxLength: 256 }), value: Type.Optional(Scalar(limits.envValueLength)) },
          { additionalProperties: false },
        ),
        {
          maxItems: limits.envEntries,
        },
      ),
    ),
    workingDir: Type.Optional(Type.Literal('/code', { 'x-message': 'must be /code' })),
    resources: Type.Optional(Resources),
  },
  { additionalProperties: false },
);

const UpstreamJobBody = Type.Object(
  {
    backoffLimit: Type.Optional(Type.Integer()),
    ttlSecondsAfterFinished: Type.Optional(Type.Integer()),
    parallelism: Type.Optional(Type.Integer()),
    completions: Type.Optional(Type.Integer()),
    activeDeadlineSeconds: Type.Optional(Type.Integer()),
    completionMode: Type.Optional(Type.Union([Type.Literal('NonIndexed'), Type.Literal('Indexed')])),
    template: Type.Object(
      {
        metadata: Type.Optional(
          Type.Object(
            {
              name: Type.Optional(Type.String({ maxLength: limits.nameLength })),
              labels: Type.Optional(LabelMap),
              annotations: Type.Optional(Annotations),
            },
            { additionalProperties: false },
          ),
        ),
        spec: Type.Object(
          {
            restartPolicy: Type.Optional(
              Type.Union([Type.Literal('Never'), Type.Literal('OnFailure')], { 'x-message': 'must be Never or OnFailure' }),
            ),
            containers: Type.Array(UpstreamContainer, { minItems: 1, maxItems: 1, 'x-message': 'exactly one container is supported' }),
            tolerations: Type.Optional(Type.Array(Toleration, { maxItems: limits.tolerations })),
            affinity: Type.Optional(
              Type.Object(
                {
                  nodeAffinity: Type.Optional(
                    Type.Object(
                      {
                        requiredDuringSchedulingIgnoredDuringExecution: Type.Optional(
                          Type.Object(
                            { nodeSelectorTerms: Type.Optional(Type.Array(NodeSelectorTerm, { maxItems: limits.nodeSelectorTerms })) },
                            { additionalProperties: false },
                          ),
                        ),
                      },
                      { additionalProperties: false },
                    ),
                  ),
                },
                { additionalProperties: false },
              ),
            ),
          },
          { additionalProperties: false },
        ),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

/** The `job` of POST /jobs/ (upstream). Integer ranges are the native spec's, checked when it is read into one. */
export const UpstreamJobSchema = Type.Object(
  {
    apiVersion: Type.Optional(Type.String({ maxLength: 64 })),
    kind: Type.Optional(Type.Literal('Job', { 'x-message': 'must be Job' })),
    metadata: Type.Optional(UpstreamMetadata),
    spec: UpstreamJobBody,
    status: Type.Optional(Type.Object({})),
  },
  { additionalProperties: false },
);
export type UpstreamJob = Static<typeof UpstreamJobSchema>;

/** The `job` of POST /cronjobs/ (upstream): its jobTemplate is read exactly like a one-off Job. */
export const UpstreamCronJobSchema = Type.Object(
  {
    apiVersion: Type.Optional(Type.String({ maxLength: 64 })),
    kind: Type.Optional(Type.Literal('CronJob', { 'x-message': 'must be CronJob' })),
    metadata: Type.Optional(UpstreamMetadata),
    spec: Type.Object(
      {
        schedule: Type.String({ minLength: 1, maxLength: 256 }),
        startingDeadlineSeconds: Type.Optional(Type.Integer()),
        jobTemplate: Type.Object({ metadata: Type.Optional(UpstreamMetadata), spec: UpstreamJobBody }, { additionalProperties: false }),
      },
      { additionalProperties: false },
    ),
    status: Type.Optional(Type.Object({})),
  },
  { additionalProperties: false },
);

/** The body of the upstream submits: the manifest and, optionally, the code as a ConfigMap with a base64 zip. */
const upstreamSubmitBody = (job: TSchema) =>
  Type.Object(
    {
      job,
      code: Type.Optional(
        Type.Object(
          { binaryData: Type.Optional(Type.Object({ code: Type.String({ description: 'base64 of a zip' }) })) },
          { description: 'V1ConfigMap (binary_data.code in the Python spelling)' },
        ),
      ),
    },
    { description: 'Keys may be snake_case (the Python client) or camelCase (Kubernetes JSON)' },
  );

export const UpstreamJobBodySchema = upstreamSubmitBody(UpstreamJobSchema);
export const UpstreamCronJobBodySchema = upstreamSubmitBody(UpstreamCronJobSchema);

export const ErrorSchema = Type.Object({
  detail: Type.String(),
  status: Type.Integer(),
  reason: Type.String({ description: 'Machine-readable, from lib/contract.ts errorReasons' }),
  field: Type.Optional(Type.String({ description: 'The request field at fault' })),
});

/*
 * Response bodies of the native API, for the OpenAPI document (lib/jobs/views.ts builds them; a unit test
 * checks that these list exactly the fields of its types).
 */
const Time = Type.Optional(Type.String({ format: 'date-time' }));
const OptionalText = Type.Optional(Type.String());

export const JobSummarySchema = Type.Object({
  name: Type.String(),
  namespace: Type.String(),
  user: OptionalText,
  state: Type.Union(['pending', 'running', 'succeeded', 'failed', 'suspended'].map((state) => Type.Literal(state))),
  image: OptionalText,
  command: Type.Optional(Type.Array(Type.String())),
  args: Type.Optional(Type.Array(Type.String())),
  createdAt: Time,
  startedAt: Time,
  finishedAt: Time,
  durationSeconds: Type.Optional(Type.Integer()),
  completions: Type.Integer(),
  parallelism: Type.Integer(),
  active: Type.Integer(),
  succeeded: Type.Integer(),
  failed: Type.Integer(),
  labels: Type.Record(Type.String(), Type.String()),
});

export const PodViewSchema = Type.Object({
  name: Type.String(),
  phase: Type.String(),
  node: OptionalText,
  startedAt: Time,
  completionIndex: OptionalText,
  containers: Type.Array(
    Type.Object({
      name: Type.String(),
      state: Type.String(),
      reason: OptionalText,
      message: OptionalText,
      exitCode: Type.Optional(Type.Integer()),
    }),
  ),
});

export const JobDetailSchema = Type.Object({
  ...JobSummarySchema.properties,
  conditions: Type.Array(
    Type.Object({ type: Type.String(), status: Type.String(), reason: OptionalText, message: OptionalText, lastTransitionTime: Time }),
  ),
  pods: Type.Array(PodViewSchema),
  profile: OptionalText,
  resources: Type.Optional(
    Type.Object({
      requests: Type.Optional(Type.Record(Type.String(), Type.String())),
      limits: Type.Optional(Type.Record(Type.String(), Type.String())),
    }),
  ),
  envKeys: Type.Optional(Type.Array(Type.String(), { description: 'Names of the env variables; values are never shown' })),
  events: Type.Optional(
    Type.Array(
      Type.Object({
        type: Type.String(),
        reason: Type.String(),
        message: Type.String(),
        object: Type.String({ description: '`Job/NAME` or `Pod/NAME`' }),
        count: Type.Integer(),
        lastSeen: Time,
      }),
      { description: 'Recent events of the job and its pods, oldest first' },
    ),
  ),
  notebook: Type.Optional(
    Type.Object(
      {
        notebook: Type.String(),
        parameters: Type.Record(Type.String(), Type.Unknown()),
        sweep: Type.Optional(Type.Record(Type.String(), Type.Array(Type.Unknown()))),
        source: Type.Union([Type.Literal('spec'), Type.Literal('command')], {
          description: 'The notebook field, or a recognised papermill command',
        }),
        runs: Type.Array(
          Type.Object({
            index: Type.Optional(Type.Integer()),
            parameters: Type.Record(Type.String(), Type.Unknown()),
            output: Type.String(),
          }),
          { description: 'Each index with its parameter set and executed notebook (under KBATCH_OUTPUTS_DIR)' },
        ),
      },
      { description: 'A notebook run (papermill)' },
    ),
  ),
});

export const UploadSchema = Type.Object({
  upload: Type.String({ description: 'Signed reference for the `upload` field of a job spec' }),
  files: Type.Integer(),
  bytes: Type.Integer(),
  archiveBytes: Type.Integer(),
  sha256: Type.String(),
  storage: Type.Union([Type.Literal('configmap'), Type.Literal('pvc'), Type.Literal('local')]),
  expiresAt: Type.String({ format: 'date-time' }),
});

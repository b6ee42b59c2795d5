import { jobNamePrefixPattern, maxJobNamePrefixLength } from '../k8s/names.ts';
import { camelCaseKeys } from '../k8s/wire.ts';
import {
  notebookLimits,
  notebookPathProblem,
  isParameterName,
  sweepSize,
  type JsonValue,
  type Parameters,
  type Sweep,
} from './notebook.ts';
import { checkResourceShape } from './policy.ts';
import {
  JobSpecSchema,
  jobSpecAliases,
  limits,
  patterns,
  type JobSpecInput,
  type NodeSelectorTerm,
  type ResourceSpec,
  type Toleration,
} from './schemas.ts';
import { checker, fail, withoutAbsent } from './validation.ts';

export type { NodeSelectorTerm, ResourceSpec, Toleration };

/** What a user may ask for. Everything else about the Job is decided by the server. */
export interface JobSpec {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: Record<string, string>;
  profile?: string;
  resources?: ResourceSpec;
  ttlSecondsAfterFinished?: number;
  backoffLimit?: number;
  activeDeadlineSeconds?: number;
  parallelism?: number;
  completions?: number;
  labels?: Record<string, string>;
  tolerations?: Toleration[];
  nodeAffinityRequired?: NodeSelectorTerm[];
  /** A signed upload reference from POST /uploads. */
  upload?: string;
  /** A notebook under /code run with papermill (lib/jobs/notebook.ts); the server writes the command. */
  notebook?: string;
  parameters?: Parameters;
  /** With a notebook: an indexed job array over the cartesian product; completions is its size. */
  sweep?: Sweep;
}

// The schema and the type list the same fields: adding one without the other fails to compile.
type SameKeys<A, B> = [keyof A] extends [keyof B] ? ([keyof B] extends [keyof A] ? true : never) : never;
const schemaMatchesType: SameKeys<JobSpec, JobSpecInput> = true;
void schemaMatchesType;

export function expectObject(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(field, 'must be an object');
  return value as Record<string, unknown>;
}

const checkJobSpec = checker(JobSpecSchema);

/** Reserved for kbatch and Kubernetes; a user label there could impersonate another user's job. */
const reservedLabelKey = /(^|\.)(kubernetes\.io|k8s\.io|jupyter\.org)\//;

function text(value: string | number | boolean): string {
  return String(value);
}

function textMap(map: Record<string, string | number | boolean> | undefined): Record<string, string> | undefined {
  return map && Object.fromEntries(Object.entries(map).map(([key, value]) => [key, text(value)]));
}

/** `retries`, `ttl` and `array` stand for their Kubernetes names; errors name what the user wrote. */
function resolveAliases(object: Record<string, unknown>): { object: Record<string, unknown>; aliasOf: Map<string, string> } {
  const aliasOf = new Map<string, string>();
  const entries = Object.entries(object).map(([key, value]): [string, unknown] => {
    const canonical = Object.hasOwn(jobSpecAliases, key) ? jobSpecAliases[key as keyof typeof jobSpecAliases] : undefined;
    if (!canonical) return [key, value];
    if (Object.hasOwn(object, canonical)) fail(key, `give either ${key} or ${canonical}, not both`);
    aliasOf.set(canonical, key);
    return [canonical, value];
  });
  return { object: Object.fromEntries(entries), aliasOf };
}

/** The combinations Kubernetes refuses, caught here so no code is stored for a Job that cannot be created. */
function checkSchedulingShape(raw: { tolerations?: Toleration[]; nodeAffinityRequired?: NodeSelectorTerm[] }): void {
  raw.tolerations?.forEach((toleration, i) => {
    if (toleration.operator === 'Exists' && toleration.value) fail(`tolerations[${i}].value`, 'must be empty when the operator is Exists');
    if (toleration.tolerationSeconds !== undefined && toleration.effect !== 'NoExecute') {
      fail(`tolerations[${i}].tolerationSeconds`, 'needs the effect NoExecute');
    }
  });
  raw.nodeAffinityRequired?.forEach((term, i) => {
    for (const kind of ['matchExpressions', 'matchFields'] as const) {
      term[kind]?.forEach((requirement, j) => {
        const field = `nodeAffinityRequired[${i}].${kind}[${j}].values`;
        const count = requirement.values?.length ?? 0;
        if ((requirement.operator === 'In' || requirement.operator === 'NotIn') && count === 0)
          fail(field, `are required with ${requirement.operator}`);
        if ((requirement.operator === 'Exists' || requirement.operator === 'DoesNotExist') && count > 0) {
          fail(field, `must be empty with ${requirement.operator}`);
        }
        if ((requirement.operator === 'Gt' || requirement.operator === 'Lt') && (count !== 1 || !/^-?\d+$/.test(requirement.values![0]!))) {
          fail(field, `must be one integer with ${requirement.operator}`);
        }
      });
    }
  });
}

/**
 * Validates a native job spec against its schema (lib/jobs/schemas.ts) and the rules a schema
 * cannot say; the first offending field is named in the 400. Null, [] and {} count as absent.
 */
export function parseJobSpec(input: unknown): JobSpec {
  const given = expectObject(input, 'spec');
  const pruned = (withoutAbsent(given, 'spec') ?? {}) as Record<string, unknown>;
  // Parameter values are JSON where null, [] and {} are values, not absences: they are kept as given.
  for (const key of ['parameters', 'sweep']) {
    if (given[key] === null || given[key] === undefined) delete pruned[key];
    else pruned[key] = given[key];
  }
  // Scheduling entries may come in the Python spelling (match_expressions, toleration_seconds) from YAML files.
  for (const key of ['tolerations', 'nodeAffinityRequired']) if (Object.hasOwn(pruned, key)) pruned[key] = camelCaseKeys(pruned[key]);
  const { object, aliasOf } = resolveAliases(pruned);
  let raw: JobSpecInput;
  try {
    raw = checkJobSpec(object);
  } catch (error) {
    const field = (error as { field?: string }).field ?? '';
    const root = field.split(/[.[]/)[0]!;
    const alias = aliasOf.get(root);
    if (alias) fail(alias + field.slice(root.length), (error as Error).message.slice(field.length + 2));
    throw error;
  }

  const name = raw.name.replace(/-+$/, '');
  if (!jobNamePrefixPattern.test(name) || name.length > maxJobNamePrefixLength) {
    fail(
      'name',
      `"${raw.name}" must be lower-case letters, digits and dashes, start and end with a letter or digit, at most ${maxJobNamePrefixLength} characters`,
    );
  }
  const labels = textMap(raw.labels);
  const labelValue = new RegExp(patterns.labelValue);
  for (const [key, value] of Object.entries(labels ?? {})) {
    if (reservedLabelKey.test(key)) fail(`labels.${key}`, 'is a reserved label key');
    // A YAML number becomes its text only now (-1, 1e+308), so the text is checked here.
    if (!labelValue.test(value)) fail(`labels.${key}`, `"${value}" is not a valid label value`);
  }
  const env = textMap(raw.env);
  const envBytes = Object.entries(env ?? {}).reduce((sum, [key, value]) => sum + Buffer.byteLength(key) + Buffer.byteLength(value), 0);
  if (envBytes > limits.envTotalBytes) fail('env', `holds ${envBytes} bytes; at most ${limits.envTotalBytes} in all`);
  const resources: ResourceSpec | undefined = raw.resources && {
    ...(raw.resources.requests ? { requests: textMap(raw.resources.requests) } : {}),
    ...(raw.resources.limits ? { limits: textMap(raw.resources.limits) } : {}),
  };
  checkResourceShape(resources);
  // Without completions, Kubernetes would read parallelism as a work queue, which kbatch jobs are not.
  if (raw.parallelism !== undefined && raw.completions === undefined && raw.sweep === undefined)
    fail('parallelism', 'needs completions (an array of N tasks) to run in parallel');
  if (raw.parallelism !== undefined && raw.completions !== undefined && raw.parallelism > raw.completions)
    fail('parallelism', `is more than completions (${raw.completions})`);

  checkSchedulingShape(raw);
  const notebook = checkNotebookRun(raw);

  const spec: JobSpec = { name };
  if (raw.image !== undefined) spec.image = raw.image;
  if (raw.command) spec.command = raw.command;
  if (raw.args) spec.args = raw.args;
  if (env) spec.env = env;
  if (raw.profile !== undefined) spec.profile = raw.profile;
  if (resources) spec.resources = resources;
  for (const key of ['ttlSecondsAfterFinished', 'backoffLimit', 'activeDeadlineSeconds', 'parallelism', 'completions'] as const) {
    if (raw[key] !== undefined) spec[key] = raw[key];
  }
  if (labels) spec.labels = labels;
  if (raw.tolerations) spec.tolerations = raw.tolerations;
  if (raw.nodeAffinityRequired) spec.nodeAffinityRequired = raw.nodeAffinityRequired;
  if (raw.upload !== undefined) spec.upload = raw.upload;
  if (notebook) Object.assign(spec, notebook);
  return spec;
}

/** Nesting of a parameter value; JSON from the body is already bounded in size. */
const maxParameterDepth = 16;

function checkJsonValue(value: unknown, field: string, depth = 0): JsonValue {
  if (depth > maxParameterDepth) fail(field, `is nested more than ${maxParameterDepth} levels deep`);
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) fail(field, 'must be a finite number');
    return value;
  }
  if (Array.isArray(value)) return value.map((item, i) => checkJsonValue(item, `${field}[${i}]`, depth + 1));
  if (typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) checkJsonValue(item, `${field}.${key}`, depth + 1);
    return value as JsonValue;
  }
  return fail(field, 'must be a JSON value');
}

/**
 * A notebook run: the path stays inside /code, names are Python identifiers, sizes are bounded, and
 * a sweep's product becomes completions (which the user may give only if it is the same number).
 */
function checkNotebookRun(raw: JobSpecInput): Pick<JobSpec, 'notebook' | 'parameters' | 'sweep' | 'completions'> | undefined {
  if (raw.notebook === undefined) {
    for (const key of ['parameters', 'sweep'] as const) if (raw[key] !== undefined) fail(key, 'needs a notebook');
    return undefined;
  }
  const problem = notebookPathProblem(raw.notebook);
  if (problem) fail('notebook', `"${raw.notebook}" ${problem}`);
  for (const key of ['command', 'args'] as const)
    if (raw[key] !== undefined) fail(key, 'cannot be given with a notebook (kbatch runs papermill)');
  const result: Pick<JobSpec, 'notebook' | 'parameters' | 'sweep' | 'completions'> = { notebook: raw.notebook };
  for (const [key, map] of [
    ['parameters', raw.parameters],
    ['sweep', raw.sweep],
  ] as const) {
    for (const name of Object.keys(map ?? {})) if (!isParameterName(name)) fail(`${key}.${name}`, 'is a Python keyword');
  }
  if (raw.parameters && Object.keys(raw.parameters).length) {
    result.parameters = Object.fromEntries(
      Object.entries(raw.parameters).map(([name, value]) => [name, checkJsonValue(value, `parameters.${name}`)]),
    );
    const bytes = Buffer.byteLength(JSON.stringify(result.parameters));
    if (bytes > notebookLimits.parametersBytes)
      fail('parameters', `hold ${bytes} bytes of JSON; at most ${notebookLimits.parametersBytes}`);
  }
  if (raw.sweep && Object.keys(raw.sweep).length) {
    const sweep: Sweep = {};
    for (const [name, values] of Object.entries(raw.sweep)) {
      if (result.parameters && Object.hasOwn(result.parameters, name))
        fail(`sweep.${name}`, 'is also a fixed parameter; give it in one place');
      sweep[name] = values.map((value, i) => checkJsonValue(value, `sweep.${name}[${i}]`));
    }
    const bytes = Buffer.byteLength(JSON.stringify(sweep));
    if (bytes > notebookLimits.sweepBytes) fail('sweep', `holds ${bytes} bytes of JSON; at most ${notebookLimits.sweepBytes}`);
    const size = sweepSize(sweep);
    if (size > limits.maxCompletions)
      fail('sweep', `makes ${size} parameter sets; at most ${limits.maxCompletions} (the completions maximum)`);
    if (raw.completions !== undefined && raw.completions !== size) fail('completions', `must be the sweep's size (${size}) or left out`);
    if (raw.parallelism !== undefined && raw.parallelism > size) fail('parallelism', `is more than the sweep's size (${size})`);
    // Every index's set goes into the Secret (KBATCH_SWEEP): bound the expansion before making it.
    const fixed = result.parameters ? Buffer.byteLength(JSON.stringify(result.parameters)) : 2;
    const widest = Object.entries(sweep).reduce(
      (sum, [name, values]) => sum + name.length + 4 + Math.max(...values.map((value) => Buffer.byteLength(JSON.stringify(value)))),
      fixed,
    );
    if (size * widest > notebookLimits.sweepExpandedBytes) {
      fail('sweep', `expands to about ${size * widest} bytes of parameter sets; at most ${notebookLimits.sweepExpandedBytes}`);
    }
    result.sweep = sweep;
    result.completions = size;
  } else if (raw.completions !== undefined && raw.completions > 1) {
    fail('completions', 'a notebook runs once; give a sweep to run it over several parameter sets');
  }
  return result;
}

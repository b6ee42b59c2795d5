import { jobNamePrefixPattern, maxJobNamePrefixLength } from '../k8s/names.ts';
import { camelCaseKeys } from '../k8s/wire.ts';
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
  const pruned = (withoutAbsent(expectObject(input, 'spec'), 'spec') ?? {}) as Record<string, unknown>;
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
  if (raw.parallelism !== undefined && raw.completions === undefined)
    fail('parallelism', 'needs completions (an array of N tasks) to run in parallel');
  if (raw.parallelism !== undefined && raw.completions !== undefined && raw.parallelism > raw.completions)
    fail('parallelism', `is more than completions (${raw.completions})`);

  checkSchedulingShape(raw);

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
  return spec;
}

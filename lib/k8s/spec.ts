import { BadRequest } from '../http/errors.ts';
import { jobNamePrefixPattern, maxJobNamePrefixLength } from './names.ts';

export interface ResourceSpec {
  requests?: Record<string, string>;
  limits?: Record<string, string>;
}

export interface Toleration {
  key?: string;
  operator?: string;
  value?: string;
  effect?: string;
  tolerationSeconds?: number;
}

export interface NodeSelectorTerm {
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
  matchFields?: { key: string; operator: string; values?: string[] }[];
}

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

type Json = unknown;

function fail(field: string, message: string): never {
  throw new BadRequest(`${field}: ${message}`, field);
}

function isObject(value: Json): value is Record<string, Json> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function expectObject(value: Json, field: string): Record<string, Json> {
  if (!isObject(value)) fail(field, 'must be an object');
  return value;
}

function expectString(value: Json, field: string, maxLength = 4096): string {
  if (typeof value !== 'string') fail(field, 'must be a string');
  if (value.length > maxLength) fail(field, `must be at most ${maxLength} characters`);
  return value;
}

function expectStringList(value: Json, field: string): string[] {
  if (!Array.isArray(value)) fail(field, 'must be a list of strings');
  return value.map((item, i) => expectString(item, `${field}[${i}]`, 128 * 1024));
}

function expectStringMap(value: Json, field: string): Record<string, string> {
  const object = expectObject(value, field);
  const result: Record<string, string> = {};
  for (const [key, item] of Object.entries(object)) {
    if (typeof item === 'number' || typeof item === 'boolean') result[key] = String(item);
    else result[key] = expectString(item, `${field}.${key}`, 1024 * 1024);
  }
  return result;
}

function expectInteger(value: Json, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) fail(field, 'must be an integer');
  if (value < min || value > max) fail(field, `must be between ${min} and ${max}`);
  return value;
}

const envNamePattern = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;
const labelKeyPattern = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const labelValuePattern = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;
const quantityPattern = /^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i?|[mkMGTPE]|u|n)?$/;
const resourceNamePattern = /^([a-z0-9.-]+\/)?[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$/i;

function parseEnv(value: Json, field: string): Record<string, string> {
  const env = expectStringMap(value, field);
  for (const name of Object.keys(env)) {
    if (!envNamePattern.test(name)) fail(`${field}.${name}`, 'is not a valid environment variable name');
  }
  return env;
}

function parseResources(value: Json, field: string): ResourceSpec {
  const object = expectObject(value, field);
  const result: ResourceSpec = {};
  for (const [key, item] of Object.entries(object)) {
    if (key !== 'requests' && key !== 'limits') fail(`${field}.${key}`, 'is not allowed (use requests or limits)');
    if (item === null || item === undefined) continue;
    const quantities = expectStringMap(item, `${field}.${key}`);
    for (const [resource, quantity] of Object.entries(quantities)) {
      if (!resourceNamePattern.test(resource)) fail(`${field}.${key}.${resource}`, 'is not a valid resource name');
      if (!quantityPattern.test(quantity)) fail(`${field}.${key}.${resource}`, `"${quantity}" is not a valid quantity`);
    }
    result[key] = quantities;
  }
  return result;
}

function parseLabels(value: Json, field: string): Record<string, string> {
  const result = expectStringMap(value, field);
  for (const [key, item] of Object.entries(result)) {
    if (!labelKeyPattern.test(key)) fail(`${field}.${key}`, 'is not a valid label key');
    if (/(^|\.)(kubernetes\.io|k8s\.io|jupyter\.org)\//.test(key)) fail(`${field}.${key}`, 'is a reserved label key');
    if (!labelValuePattern.test(item)) fail(`${field}.${key}`, 'is not a valid label value');
  }
  return result;
}

const tolerationFields = new Set(['key', 'operator', 'value', 'effect', 'tolerationSeconds']);

function parseTolerations(value: Json, field: string): Toleration[] {
  if (!Array.isArray(value)) fail(field, 'must be a list');
  return value.map((item, i) => {
    const object = expectObject(item, `${field}[${i}]`);
    const result: Toleration = {};
    for (const [key, v] of Object.entries(object)) {
      if (v === null || v === undefined) continue;
      if (!tolerationFields.has(key)) fail(`${field}[${i}].${key}`, 'is not allowed');
      if (key === 'tolerationSeconds') result.tolerationSeconds = expectInteger(v, `${field}[${i}].${key}`, 0, 1e9);
      else (result as Record<string, string>)[key] = expectString(v, `${field}[${i}].${key}`, 317);
    }
    return result;
  });
}

function parseSelectorRequirements(value: Json, field: string) {
  if (!Array.isArray(value)) fail(field, 'must be a list');
  return value.map((item, i) => {
    const object = expectObject(item, `${field}[${i}]`);
    for (const key of Object.keys(object)) if (!['key', 'operator', 'values'].includes(key)) fail(`${field}[${i}].${key}`, 'is not allowed');
    const requirement: { key: string; operator: string; values?: string[] } = {
      key: expectString(object.key, `${field}[${i}].key`, 317),
      operator: expectString(object.operator, `${field}[${i}].operator`, 32),
    };
    if (object.values !== undefined && object.values !== null) requirement.values = expectStringList(object.values, `${field}[${i}].values`);
    return requirement;
  });
}

export function parseNodeSelectorTerms(value: Json, field: string): NodeSelectorTerm[] {
  if (!Array.isArray(value)) fail(field, 'must be a list');
  return value.map((item, i) => {
    const object = expectObject(item, `${field}[${i}]`);
    const term: NodeSelectorTerm = {};
    for (const [key, v] of Object.entries(object)) {
      if (v === null || v === undefined || (Array.isArray(v) && v.length === 0)) continue;
      if (key === 'matchExpressions' || key === 'match_expressions') term.matchExpressions = parseSelectorRequirements(v, `${field}[${i}].matchExpressions`);
      else if (key === 'matchFields' || key === 'match_fields') term.matchFields = parseSelectorRequirements(v, `${field}[${i}].matchFields`);
      else fail(`${field}[${i}].${key}`, 'is not allowed (use matchExpressions or matchFields)');
    }
    return term;
  });
}

type FieldParser = (value: Json, field: string, spec: JobSpec) => void;

const jobSpecFields: Record<keyof JobSpec, FieldParser> = {
  name: (v, f, s) => {
    const name = expectString(v, f, 253);
    const trimmed = name.replace(/-+$/, '');
    if (!jobNamePrefixPattern.test(trimmed) || trimmed.length > maxJobNamePrefixLength) {
      fail(f, `"${name}" must be lower-case letters, digits and dashes, start and end with a letter or digit, at most ${maxJobNamePrefixLength} characters`);
    }
    s.name = trimmed;
  },
  image: (v, f, s) => {
    const image = expectString(v, f, 1024);
    if (!image.trim() || /\s/.test(image)) fail(f, 'must be a non-empty image reference without spaces');
    s.image = image;
  },
  command: (v, f, s) => (s.command = expectStringList(v, f)),
  args: (v, f, s) => (s.args = expectStringList(v, f)),
  env: (v, f, s) => (s.env = parseEnv(v, f)),
  profile: (v, f, s) => (s.profile = expectString(v, f, 253)),
  resources: (v, f, s) => (s.resources = parseResources(v, f)),
  ttlSecondsAfterFinished: (v, f, s) => (s.ttlSecondsAfterFinished = expectInteger(v, f, 0, 365 * 24 * 3600)),
  backoffLimit: (v, f, s) => (s.backoffLimit = expectInteger(v, f, 0, 100)),
  activeDeadlineSeconds: (v, f, s) => (s.activeDeadlineSeconds = expectInteger(v, f, 1, 365 * 24 * 3600)),
  parallelism: (v, f, s) => (s.parallelism = expectInteger(v, f, 1, 1000)),
  completions: (v, f, s) => (s.completions = expectInteger(v, f, 1, 10_000)),
  labels: (v, f, s) => (s.labels = parseLabels(v, f)),
  tolerations: (v, f, s) => (s.tolerations = parseTolerations(v, f)),
  nodeAffinityRequired: (v, f, s) => (s.nodeAffinityRequired = parseNodeSelectorTerms(v, f)),
  upload: (v, f, s) => (s.upload = expectString(v, f, 8192)),
};

const aliases: Record<string, keyof JobSpec> = { retries: 'backoffLimit', ttl: 'ttlSecondsAfterFinished', array: 'completions' };

/** Validates a native job spec against the allow-list; the first offending field is named in the 400. */
export function parseJobSpec(input: Json): JobSpec {
  const object = expectObject(input, 'spec');
  const spec = {} as JobSpec;
  for (const [rawKey, value] of Object.entries(object)) {
    if (value === null || value === undefined) continue;
    const key = (aliases[rawKey] ?? rawKey) as keyof JobSpec;
    const parse = Object.hasOwn(jobSpecFields, key) ? jobSpecFields[key] : undefined;
    if (!parse) fail(rawKey, 'is not an allowed field (allowed: ' + Object.keys(jobSpecFields).join(', ') + ')');
    parse(value, rawKey, spec);
  }
  if (!spec.name) fail('name', 'is required');
  // Without completions, Kubernetes would read parallelism as a work queue, which kbatch jobs are not.
  if (spec.parallelism !== undefined && spec.completions === undefined) fail('parallelism', 'needs completions (an array of N tasks) to run in parallel');
  if (spec.parallelism !== undefined && spec.completions !== undefined && spec.parallelism > spec.completions) fail('parallelism', `is more than completions (${spec.completions})`);
  return spec;
}

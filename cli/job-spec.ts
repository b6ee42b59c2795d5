import { readFileSync } from 'node:fs';
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { JobSpec, ResourceSpec } from '../lib/jobs/spec.ts';
import { parseDuration, type ParsedArgs } from './args.ts';
import { UsageError } from './errors.ts';

/** What `job submit` sends plus what stays on this machine (the code path). */
export interface SubmitPlan {
  spec: JobSpec;
  code: string | undefined;
}

type Json = unknown;
type FileData = Record<string, Json>;

/** Keys of a `-f/--filename job.yaml`: upstream's (name, image, command, args, env, code, profile, description) and ours. */
const fileKeys: Record<string, string> = {
  name: 'name',
  image: 'image',
  command: 'command',
  args: 'args',
  env: 'env',
  code: 'code',
  profile: 'profile',
  description: 'description',
  resources: 'resources',
  cpu: 'cpu',
  memory: 'memory',
  gpu: 'gpu',
  labels: 'labels',
  tolerations: 'tolerations',
  nodeAffinityRequired: 'nodeAffinityRequired',
  node_affinity_required: 'nodeAffinityRequired',
  upload: 'upload',
  ttlSecondsAfterFinished: 'ttlSecondsAfterFinished',
  ttl: 'ttlSecondsAfterFinished',
  backoffLimit: 'backoffLimit',
  retries: 'backoffLimit',
  activeDeadlineSeconds: 'activeDeadlineSeconds',
  timeout: 'activeDeadlineSeconds',
  parallelism: 'parallelism',
  completions: 'completions',
  array: 'completions',
  notebook: 'notebook',
  parameters: 'parameters',
  sweep: 'sweep',
};

/**
 * Reads a job file. Its `code:` is relative to the file, not to where kbatch runs, so
 * `kbatch job submit -f jobs/train.yaml` finds `code: src` next to the YAML from anywhere.
 */
export function readJobFile(path: string, extraKeys: string[] = []): FileData {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`--filename: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  let data: Json;
  try {
    data = parseYaml(text);
  } catch (error) {
    // The whole message: the yaml library's includes the line, the column and the offending text.
    throw new UsageError(`--filename: ${path} is not valid YAML:\n${(error as Error).message.trimEnd()}`);
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) throw new UsageError(`--filename: ${path} must be a mapping of job settings`);
  const allowed = { ...fileKeys, ...Object.fromEntries(extraKeys.map((key) => [key, key])) };
  const result: FileData = {};
  for (const [key, value] of Object.entries(data as FileData)) {
    const canonical = allowed[key];
    if (!canonical) throw new UsageError(`--filename: unknown key "${key}" in ${path} (allowed: ${Object.keys(allowed).join(', ')})`);
    if (value !== null && value !== undefined) result[canonical] = value;
  }
  if (typeof result.code === 'string' && result.code && !isAbsolute(result.code)) result.code = resolve(dirname(path), result.code);
  // A notebook next to the YAML file is found from anywhere too; a path that is not here is one inside /code.
  if (typeof result.notebook === 'string' && !isAbsolute(result.notebook) && existsSync(resolve(dirname(path), result.notebook))) {
    result.notebook = resolve(dirname(path), result.notebook);
  }
  return result;
}

function stringList(value: Json, what: string): string[] {
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string'))
    throw new UsageError(`${what} must be a list of strings, e.g. ["python", "main.py"]`);
  return value;
}

/** `--command '["python","main.py"]'`, as upstream: a JSON list, so arguments with spaces survive. */
export function parseJsonList(raw: string, flag: string): string[] {
  let value: Json;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new UsageError(`${flag}: not valid JSON: ${raw}`, `${flag} takes a JSON list, e.g. ${flag} '["python", "main.py"]'`);
  }
  return stringList(value, flag);
}

function stringMap(value: Json, what: string): Record<string, string> {
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new UsageError(`${what} must be a mapping of names to strings`);
  const result: Record<string, string> = {};
  for (const [key, item] of Object.entries(value)) {
    if (typeof item === 'string') result[key] = item;
    else if (typeof item === 'number' || typeof item === 'boolean') result[key] = String(item);
    else throw new UsageError(`${what}.${key} must be a string`);
  }
  return result;
}

/** `--env` as a JSON object (upstream) or `KEY=VALUE` (repeatable); later values win. */
export function parseEnvFlags(values: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const raw of values) {
    if (raw.trim().startsWith('{')) {
      let parsed: Json;
      try {
        parsed = JSON.parse(raw);
      } catch {
        throw new UsageError(`--env: not valid JSON: ${raw}`);
      }
      Object.assign(env, stringMap(parsed, '--env'));
      continue;
    }
    const eq = raw.indexOf('=');
    if (eq <= 0) throw new UsageError(`--env: expected KEY=VALUE or a JSON object, got "${raw}"`);
    env[raw.slice(0, eq)] = raw.slice(eq + 1);
  }
  return env;
}

export function parseLabelFlags(values: string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const raw of values) {
    const eq = raw.indexOf('=');
    if (eq <= 0) throw new UsageError(`--label: expected KEY=VALUE, got "${raw}"`);
    labels[raw.slice(0, eq)] = raw.slice(eq + 1);
  }
  return labels;
}

/**
 * A parameter value as typed on the command line: JSON where it parses as JSON (3, 0.5, true,
 * null, {"a": 1}, [1, 2], "quoted"), else the text itself, so `-p label=run one` needs no quotes.
 */
export function typedValue(raw: string): Json {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/** `name=value` (typed as above) or `name:=JSON` (must be JSON: `-p tag:='"1.0"'` keeps a string). */
function nameAndValue(raw: string, flag: string): [string, string, boolean] {
  const eq = raw.indexOf('=');
  if (eq <= 0) throw new UsageError(`${flag}: expected NAME=VALUE or NAME:=JSON, got "${raw}"`);
  const forced = raw[eq - 1] === ':';
  const name = raw.slice(0, forced ? eq - 1 : eq);
  if (!name) throw new UsageError(`${flag}: expected NAME=VALUE or NAME:=JSON, got "${raw}"`);
  return [name, raw.slice(eq + 1), forced];
}

function forcedJson(text: string, flag: string, name: string): Json {
  try {
    return JSON.parse(text);
  } catch {
    throw new UsageError(`${flag} ${name}:=: not valid JSON: ${text}`);
  }
}

export function parseParameterFlags(values: string[], flag = '--parameter'): Record<string, Json> {
  const parameters: Record<string, Json> = {};
  for (const raw of values) {
    const [name, text, forced] = nameAndValue(raw, flag);
    parameters[name] = forced ? forcedJson(text, flag, name) : typedValue(text);
  }
  return parameters;
}

/** `--sweep name=v1,v2,v3` (each typed), or a JSON list: `--sweep 'name=[[1,2],[3,4]]'` / `name:=[...]`. */
export function parseSweepFlags(values: string[]): Record<string, Json[]> {
  const sweep: Record<string, Json[]> = {};
  for (const raw of values) {
    const [name, text, forced] = nameAndValue(raw, '--sweep');
    let list: Json;
    if (forced || text.trim().startsWith('[')) {
      list = forcedJson(text, '--sweep', name);
      if (!Array.isArray(list)) throw new UsageError(`--sweep ${name}: a JSON value must be a list, got ${text}`);
    } else list = text.split(',').map(typedValue);
    if (!(list as Json[]).length) throw new UsageError(`--sweep ${name}: needs at least one value`);
    sweep[name] = list as Json[];
  }
  return sweep;
}

/**
 * Where the notebook is in /code. A directory DIR is uploaded as /code/DIR (cli/upload.ts), so the
 * notebook is under that name: without --code, the notebook's directory is uploaded; with --code DIR
 * holding the notebook, its path inside; a path not on this machine is taken as already in /code.
 */
export function notebookInCode(notebook: string, code: string | undefined): { notebook: string; code: string | undefined } {
  const local = resolve(notebook);
  if (code === undefined) {
    if (!existsSync(local))
      throw new UsageError(
        `--notebook: ${notebook} does not exist`,
        'give --code DIR with the notebook path inside it, or a local notebook',
      );
    return { notebook: `${basename(dirname(local))}/${basename(local)}`, code: dirname(local) };
  }
  const codePath = resolve(code);
  if (existsSync(codePath) && statSync(codePath).isFile()) return { notebook: basename(codePath), code };
  const inside = relative(codePath, local);
  if (existsSync(local) && inside && !inside.startsWith('..') && !isAbsolute(inside)) {
    return { notebook: `${basename(codePath)}/${inside.split(sep).join('/')}`, code };
  }
  return { notebook, code };
}

function integerValue(value: Json, what: string): number {
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  if (typeof value === 'string' && /^\d+$/.test(value.trim())) return Number(value);
  throw new UsageError(`${what} must be an integer`);
}

function secondsValue(value: Json, what: string): number {
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  if (typeof value === 'string') return parseDuration(value, what);
  throw new UsageError(`${what} must be a number of seconds or a duration like 2h`);
}

function quantity(value: Json, what: string): string {
  if (typeof value === 'number') return String(value);
  if (typeof value === 'string' && value.trim()) return value.trim();
  throw new UsageError(`${what} must be a quantity like 2, 500m or 4Gi`);
}

/** `--cpu 2` asks for and caps at 2 cores: requests equal to limits make the job's share predictable. */
function applyResource(resources: ResourceSpec, key: string, value: string): void {
  resources.requests = { ...resources.requests, [key]: value };
  resources.limits = { ...resources.limits, [key]: value };
}

/**
 * Merges a `-f` file with flags into a spec. Order as upstream (`_prep_job_data`): the file first,
 * then every flag that was given overrides it; env and labels merge key by key.
 */
export function buildSubmitPlan(args: ParsedArgs, file: FileData = {}): SubmitPlan {
  const spec = {} as JobSpec;
  const name = args.string('name') ?? (file.name as Json);
  if (name === undefined || name === '')
    throw new UsageError(
      'missing --name (or "name" in the --filename YAML)',
      'e.g. kbatch job submit --name hello --image python:3.12 --command \'["python","-c","print(1)"]\'',
    );
  if (typeof name !== 'string') throw new UsageError('name must be a string');
  spec.name = name;

  const image = args.string('image') ?? file.image;
  if (image !== undefined) {
    if (typeof image !== 'string') throw new UsageError('image must be a string');
    spec.image = image;
  }
  // `-p` is upstream's --profile; with NAME=VALUE it is a notebook parameter, as papermill's -p (profile names hold no "=").
  const profileFlags = args.strings('profile');
  const parameterFlags = [...profileFlags.filter((value) => value.includes('=')), ...args.strings('parameter')];
  const profile = profileFlags.filter((value) => !value.includes('=')).at(-1) ?? file.profile;
  if (profile !== undefined) {
    if (typeof profile !== 'string') throw new UsageError('profile must be a profile name');
    spec.profile = profile;
  }
  if (!spec.image && !spec.profile)
    throw new UsageError('missing --image (or --profile with an image)', 'run kbatch profiles to see the profiles the server offers');

  const command = args.string('command');
  if (command !== undefined) spec.command = parseJsonList(command, '--command');
  else if (file.command !== undefined) spec.command = stringList(file.command, 'command');
  const commandArgs = args.string('args');
  if (commandArgs !== undefined) spec.args = parseJsonList(commandArgs, '--args');
  else if (file.args !== undefined) spec.args = stringList(file.args, 'args');

  const env = { ...(file.env !== undefined ? stringMap(file.env, 'env') : {}), ...parseEnvFlags(args.strings('env')) };
  if (Object.keys(env).length) spec.env = env;
  const labels = { ...(file.labels !== undefined ? stringMap(file.labels, 'labels') : {}), ...parseLabelFlags(args.strings('label')) };
  if (Object.keys(labels).length) spec.labels = labels;

  const resources: ResourceSpec = {};
  if (file.resources !== undefined) {
    const given = file.resources as Record<string, Json>;
    if (!given || typeof given !== 'object' || Array.isArray(given))
      throw new UsageError('resources must be a mapping with requests and/or limits');
    for (const [key, value] of Object.entries(given)) {
      if (key !== 'requests' && key !== 'limits') throw new UsageError(`resources.${key} is not allowed (use requests or limits)`);
      resources[key] = stringMap(value, `resources.${key}`);
    }
  }
  const cpu = args.string('cpu') ?? file.cpu;
  if (cpu !== undefined) applyResource(resources, 'cpu', quantity(cpu, '--cpu'));
  const memory = args.string('memory') ?? file.memory;
  if (memory !== undefined) applyResource(resources, 'memory', quantity(memory, '--memory'));
  const gpu = args.string('gpu') ?? file.gpu;
  if (gpu !== undefined) applyResource(resources, 'nvidia.com/gpu', quantity(gpu, '--gpu'));
  if (resources.requests || resources.limits) spec.resources = resources;

  const completions =
    args.integer('array', 1, 10_000) ?? (file.completions !== undefined ? integerValue(file.completions, 'completions') : undefined);
  if (completions !== undefined) spec.completions = completions;
  const parallelism =
    args.integer('parallelism', 1, 1000) ?? (file.parallelism !== undefined ? integerValue(file.parallelism, 'parallelism') : undefined);
  if (parallelism !== undefined) spec.parallelism = parallelism;
  const retries =
    args.integer('retries', 0, 100) ?? (file.backoffLimit !== undefined ? integerValue(file.backoffLimit, 'retries') : undefined);
  if (retries !== undefined) spec.backoffLimit = retries;
  const timeout = args.string('timeout') ?? file.activeDeadlineSeconds;
  if (timeout !== undefined) spec.activeDeadlineSeconds = secondsValue(timeout, '--timeout');
  const ttl = args.string('ttl') ?? file.ttlSecondsAfterFinished;
  if (ttl !== undefined) spec.ttlSecondsAfterFinished = secondsValue(ttl, '--ttl');

  // Passed through for the server to validate: they come from YAML only and have no flags.
  if (file.tolerations !== undefined) spec.tolerations = file.tolerations as JobSpec['tolerations'];
  if (file.nodeAffinityRequired !== undefined) spec.nodeAffinityRequired = file.nodeAffinityRequired as JobSpec['nodeAffinityRequired'];
  if (file.upload !== undefined) spec.upload = String(file.upload);

  const codeGiven = args.string('code') ?? file.code;
  if (codeGiven !== undefined && typeof codeGiven !== 'string') throw new UsageError('code must be a path to a file or directory');
  let code: string | undefined = codeGiven;

  const notebook = args.string('notebook') ?? file.notebook;
  const parameters = {
    ...(file.parameters !== undefined ? (file.parameters as Record<string, Json>) : {}),
    ...parseParameterFlags(parameterFlags),
  };
  const sweep = { ...(file.sweep !== undefined ? (file.sweep as Record<string, Json[]>) : {}), ...parseSweepFlags(args.strings('sweep')) };
  if (notebook !== undefined) {
    if (typeof notebook !== 'string' || !notebook) throw new UsageError('notebook must be the path of a .ipynb file');
    if (spec.command || spec.args) throw new UsageError('--notebook runs papermill itself: give no --command or --args with it');
    const placed = spec.upload ? { notebook, code } : notebookInCode(notebook, code);
    spec.notebook = placed.notebook;
    code = placed.code;
    // Passed through for the server to check (names, sizes, the sweep's product).
    if (Object.keys(parameters).length) spec.parameters = parameters as JobSpec['parameters'];
    if (Object.keys(sweep).length) spec.sweep = sweep as JobSpec['sweep'];
  } else if (Object.keys(parameters).length || Object.keys(sweep).length) {
    throw new UsageError(
      'parameters and --sweep need --notebook',
      'e.g. kbatch job submit -n nb --image IMAGE --notebook analysis.ipynb -p alpha=0.5 --sweep seed=1,2,3',
    );
  }
  // `--code` or its founding spelling `--file`, given on the command line, is relative to here.
  if (code !== undefined && spec.upload) throw new UsageError('give either --code or "upload", not both');
  return { spec, code: code || undefined };
}

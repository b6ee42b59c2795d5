import { createHash } from 'node:crypto';
import { Ajv2020, type ErrorObject, type Options, type ValidateFunction } from 'ajv/dist/2020.js';
import type { Static, TSchema } from 'typebox';
import { BadRequest } from '../http/errors.ts';
import { precompiledValidator } from './precompiled-validators.ts';

/**
 * Ajv checks request bodies against the TypeBox schemas of lib/jobs/schemas.ts; the first error
 * becomes a 400 that names the field (`resources.limits.cpu`, `command[2]`) in a human sentence.
 * Validation only follows the schema, which has no recursion, so a deeply nested body costs no
 * more than the schema is deep.
 */
export const ajvOptions: Options = { allErrors: false, verbose: true, strict: true, strictTypes: false };

/** An Ajv as the checkers use it; scripts/bundle.ts precompiles the schemas with one made the same way. */
export function createAjv(extra: Options = {}): Ajv2020 {
  const made = new Ajv2020({ ...ajvOptions, ...extra });
  made.addKeyword('x-message');
  return made;
}

/** What names a schema among the validators the build precompiled: the hash of its JSON. */
export function schemaKey(schema: TSchema): string {
  return createHash('sha256').update(JSON.stringify(schema)).digest('hex');
}

let ajv: Ajv2020 | undefined;

export function fail(field: string, message: string): never {
  throw new BadRequest(`${field}: ${message}`, field);
}

/** The JSON pointer of an Ajv error as the dotted path users know, with [i] for list items. */
function fieldPath(root: string, pointer: string, data: unknown): string {
  let path = root;
  let node = data;
  for (const raw of pointer.split('/').slice(1)) {
    const segment = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node)) path += `[${segment}]`;
    else path += path ? `.${segment}` : segment;
    node =
      node !== null && typeof node === 'object' && Object.hasOwn(node, segment) ? (node as Record<string, unknown>)[segment] : undefined;
  }
  return path;
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

const typeNames: Record<string, string> = {
  string: 'a string',
  integer: 'an integer',
  number: 'a number',
  boolean: 'true or false',
  object: 'an object (a mapping of names to values)',
  array: 'a list',
  null: 'null',
};

/** One error as `[field, sentence]`. */
function describe(error: ErrorObject, root: string, data: unknown): [string, string] {
  const field = fieldPath(root, error.instancePath, data);
  const schema = (error.parentSchema ?? {}) as Record<string, unknown>;
  const custom = typeof schema['x-message'] === 'string' ? (schema['x-message'] as string) : undefined;
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'type':
      return [field, `must be ${typeNames[String(params.type)] ?? String(params.type)}`];
    case 'required':
      return [join(field, String(params.missingProperty)), 'is required'];
    case 'additionalProperties': {
      const allowed = Object.keys((schema.properties as object | undefined) ?? {});
      return [
        join(field, String(params.additionalProperty)),
        `is not an allowed field${allowed.length ? ` (allowed here: ${allowed.join(', ')})` : ''}`,
      ];
    }
    case 'minimum':
    case 'maximum':
      return [field, `must be an integer between ${String(schema.minimum)} and ${String(schema.maximum)}`];
    case 'minLength':
      return [field, Number(params.limit) === 1 ? 'must not be empty' : `must be at least ${String(params.limit)} characters`];
    case 'maxLength':
      return [field, `must be at most ${String(params.limit)} characters`];
    case 'minItems':
    case 'maxItems':
      return [field, custom ?? `must have ${error.keyword === 'minItems' ? 'at least' : 'at most'} ${String(params.limit)} items`];
    case 'maxProperties':
      return [field, `must have at most ${String(params.limit)} entries`];
    case 'anyOf':
    case 'const':
    case 'enum':
    case 'pattern':
      return [field, custom ?? 'has an invalid value'];
    default:
      return [field, custom ?? error.message ?? 'is invalid'];
  }
}

/** The error to report: a key refused by `propertyNames` is named itself, a failed union as a whole. */
function firstError(errors: ErrorObject[], root: string, data: unknown): [string, string] {
  const union = errors.findLast((e) => e.keyword === 'anyOf');
  if (union) {
    // A branch of the right type that failed further (a string failing its pattern) says more than the union.
    const inner = errors.find(
      (e) => e !== union && e.instancePath.startsWith(union.instancePath) && e.keyword !== 'type' && e.keyword !== 'const',
    );
    return describe(inner ?? union, root, data);
  }
  const error = errors[0]!;
  const propertyName = (error as ErrorObject & { propertyName?: string }).propertyName;
  if (propertyName !== undefined) {
    const field = join(fieldPath(root, error.instancePath, data), propertyName);
    const schema = (error.parentSchema ?? {}) as Record<string, unknown>;
    if (error.keyword === 'not') return [field, 'is not allowed as a name'];
    if (error.keyword === 'maxLength') return [field, `is longer than ${String(schema.maxLength)} characters`];
    return [field, typeof schema['x-message'] === 'string' ? schema['x-message'] : 'is not a valid name'];
  }
  return describe(error, root, data);
}

/** A checker for one schema: returns the value typed by the schema, or throws a 400 naming the first bad field. */
export function checker<T extends TSchema>(schema: T, root = ''): (value: unknown) => Static<T> {
  // Precompiled by the build (the bundles' validators are Ajv's standalone code, see
  // lib/jobs/precompiled-validators.ts), else compiled on first use: Ajv's first compile costs
  // ~0.1-0.3 s, which processes that never validate (the jobs and uploads functions) should not pay
  // at start, and the submit function should not pay at its first submit.
  let validate: ValidateFunction | undefined;
  return (value) => {
    validate ??= precompiledValidator(schemaKey(schema)) ?? (ajv ??= createAjv()).compile(schema as object);
    if (validate(value)) return value as Static<T>;
    const [field, message] = firstError(validate.errors ?? [], root, value);
    return fail(field || root || 'body', message);
  };
}

/** Deeper than any field of a job (a Job manifest's deepest is about 12); anything deeper is refused, not walked. */
export const maxNesting = 32;

/**
 * The value without null, undefined, [] and {} in any mapping ("absent", as the Python client sends every
 * field of its model). Own properties only, copied with defineProperty semantics (Object.fromEntries),
 * so a `__proto__` key stays a plain key that the schema then refuses.
 */
export function withoutAbsent(value: unknown, root: string, depth = 0): unknown {
  if (depth > maxNesting) fail(root || 'body', `is nested more than ${maxNesting} levels deep`);
  if (value === null || value === undefined) return undefined;
  if (Array.isArray(value)) {
    // Items keep their place (an absent one becomes null, which the schema refuses), so errors name the right index.
    const items = value.map((item) => withoutAbsent(item, root, depth + 1) ?? null);
    return items.length ? items : undefined;
  }
  if (typeof value === 'object') {
    const entries = Object.entries(value)
      .map(([key, item]) => [key, withoutAbsent(item, root, depth + 1)] as const)
      .filter(([, item]) => item !== undefined);
    return entries.length ? Object.fromEntries(entries) : undefined;
  }
  return value;
}

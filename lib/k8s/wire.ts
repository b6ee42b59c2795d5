import { BadRequest } from '../http/errors.ts';

/**
 * Key-case conversion between Kubernetes' JSON (camelCase) and the upstream kbatch wire format,
 * the Python client's `to_dict()` (snake_case, `+00:00` timestamps). Keys *inside* free-form maps
 * (labels, env data, resource quantities) are user data and are never converted.
 */
const freeFormMaps = new Set([
  'labels',
  'annotations',
  'data',
  'binaryData',
  'binary_data',
  'stringData',
  'string_data',
  'nodeSelector',
  'node_selector',
  'limits',
  'requests',
  'matchLabels',
  'match_labels',
  'capacity',
  'allocatable',
  'volumeAttributes',
  'volume_attributes',
]);

const snakeSpecial: Record<string, string> = { continue: '_continue', from: '_from' };
const camelSpecial: Record<string, string> = { _continue: 'continue', _from: 'from' };

export function snakeCase(key: string): string {
  return (
    (Object.hasOwn(snakeSpecial, key) ? snakeSpecial[key] : undefined) ??
    key
      .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
      .replace(/([A-Z])([A-Z][a-z])/g, '$1_$2')
      .toLowerCase()
  );
}

export function camelCase(key: string): string {
  if (Object.hasOwn(camelSpecial, key)) return camelSpecial[key]!;
  if (!key.includes('_')) return key;
  // pod_i_ps -> podIPs, pod_ip -> podIP: the Python client's acronym spellings.
  const acronyms: Record<string, string> = {
    pod_ip: 'podIP',
    host_ip: 'hostIP',
    pod_i_ps: 'podIPs',
    host_i_ps: 'hostIPs',
    cluster_ip: 'clusterIP',
    cluster_i_ps: 'clusterIPs',
  };
  if (Object.hasOwn(acronyms, key)) return acronyms[key]!;
  // Only an underscore inside a word joins it: `__proto__` stays itself (and is refused by name).
  return key.replace(/(?<=[a-z0-9])_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Python's `datetime.isoformat()` for UTC, which upstream clients parse with `fromisoformat`. */
export function pythonTimestamp(date: Date): string {
  const iso = date.toISOString();
  const [seconds, fraction] = iso.slice(0, -1).split('.');
  const micros = Number(fraction ?? 0) * 1000;
  return micros ? `${seconds}.${String(micros).padStart(6, '0')}+00:00` : `${seconds}+00:00`;
}

/** Deeper than any Kubernetes object; a request nested further is refused instead of walked. */
const maxDepth = 64;

/**
 * Rebuilds the value with converted keys. Own properties only, and objects are built with
 * Object.fromEntries, so a `__proto__` key stays a plain key and never becomes a prototype.
 */
function convert(value: unknown, keyFor: (key: string) => string, dates: (d: Date) => unknown, depth = 0): unknown {
  if (depth > maxDepth) throw new BadRequest(`body: nested more than ${maxDepth} levels deep`, 'body');
  if (value instanceof Date) return dates(value);
  if (Array.isArray(value)) return value.map((item) => convert(item, keyFor, dates, depth + 1));
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>)
        .filter(([, item]) => item !== undefined)
        .map(([key, item]) => [
          keyFor(key),
          freeFormMaps.has(key) ? convertMapValues(item, dates) : convert(item, keyFor, dates, depth + 1),
        ]),
    );
  }
  return value;
}

function convertMapValues(value: unknown, dates: (d: Date) => unknown): unknown {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return value;
  return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, v instanceof Date ? dates(v) : v]));
}

const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

const reviveTimestamps = (_key: string, v: unknown) => (typeof v === 'string' && rfc3339.test(v) ? new Date(v) : v);

/** Field names repeat in every object of a list: each is converted once (bounded: fieldsV1 keys are open-ended). */
const snakeCache = new Map<string, string>();
function cachedSnakeCase(key: string): string {
  let converted = snakeCache.get(key);
  if (converted === undefined) {
    if (snakeCache.size >= 10_000) snakeCache.clear();
    converted = snakeCase(key);
    snakeCache.set(key, converted);
  }
  return converted;
}

/**
 * A client-node model or raw Kubernetes JSON (timestamps as Dates or strings) to the upstream wire
 * format, in one walk. It gives exactly what the JSON round trip it replaces gave (a JSON copy whose
 * RFC 3339 strings became Dates, then the generic key conversion, see `referenceUpstreamWire` in
 * test/unit/wire.test.ts), which cost half of an upstream list's CPU: JSON semantics (undefined and
 * functions dropped, null in arrays, non-finite numbers null, toJSON honoured), every RFC 3339 string
 * a Python timestamp, keys snake_cased except inside free-form maps.
 */
export function toUpstreamWire(value: unknown): unknown {
  return toWire(value, 0);
}

function toWire(value: unknown, depth: number): unknown {
  if (depth > maxDepth) throw new BadRequest(`body: nested more than ${maxDepth} levels deep`, 'body');
  if (typeof value === 'string') return rfc3339.test(value) ? pythonTimestamp(new Date(value)) : value;
  if (value === null || typeof value === 'boolean') return value;
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (typeof value !== 'object') return undefined; // undefined, functions, symbols: left out, as JSON does
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : pythonTimestamp(value);
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return toWire((value as { toJSON(): unknown }).toJSON(), depth);
  if (Array.isArray(value)) {
    const out = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) out[i] = toWire(value[i], depth + 1) ?? null;
    return out;
  }
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    const item = (value as Record<string, unknown>)[key];
    const converted = freeFormMaps.has(key) ? freeFormToWire(item) : toWire(item, depth + 1);
    if (converted === undefined) continue;
    const name = cachedSnakeCase(key);
    // A `__proto__` key stays a plain key and never becomes a prototype.
    if (name === '__proto__') Object.defineProperty(out, name, { value: converted, enumerable: true, writable: true, configurable: true });
    else out[name] = converted;
  }
  return out;
}

/** A free-form map keeps its keys; its top-level timestamps are converted, deeper values only made JSON. */
function freeFormToWire(value: unknown): unknown {
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    // The common case (labels, annotations, quantities): string values only.
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.every(([, v]) => typeof v === 'string' || v === undefined)) {
      return Object.fromEntries(
        entries
          .filter(([, v]) => v !== undefined)
          .map(([k, v]) => [k, rfc3339.test(v as string) ? pythonTimestamp(new Date(v as string)) : v]),
      );
    }
  }
  const json = JSON.stringify(value);
  if (json === undefined) return undefined;
  return convertMapValues(JSON.parse(json, reviveTimestamps), pythonTimestamp);
}

export function camelCaseKeys(value: unknown): unknown {
  return convert(value, camelCase, (d) => d);
}

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
    snakeSpecial[key] ??
    key
      .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
      .replace(/([A-Z])([A-Z][a-z])/g, '$1_$2')
      .toLowerCase()
  );
}

export function camelCase(key: string): string {
  if (camelSpecial[key]) return camelSpecial[key];
  if (!key.includes('_')) return key;
  // pod_i_ps -> podIPs, pod_ip -> podIP: the Python client's acronym spellings.
  const acronyms: Record<string, string> = { pod_ip: 'podIP', host_ip: 'hostIP', pod_i_ps: 'podIPs', host_i_ps: 'hostIPs', cluster_ip: 'clusterIP', cluster_i_ps: 'clusterIPs' };
  if (acronyms[key]) return acronyms[key];
  return key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Python's `datetime.isoformat()` for UTC, which upstream clients parse with `fromisoformat`. */
export function pythonTimestamp(date: Date): string {
  const iso = date.toISOString();
  const [seconds, fraction] = iso.slice(0, -1).split('.');
  const micros = Number(fraction ?? 0) * 1000;
  return micros ? `${seconds}.${String(micros).padStart(6, '0')}+00:00` : `${seconds}+00:00`;
}

function convert(value: unknown, keyFor: (key: string) => string, dates: (d: Date) => unknown): unknown {
  if (value instanceof Date) return dates(value);
  if (Array.isArray(value)) return value.map((item) => convert(item, keyFor, dates));
  if (value && typeof value === 'object') {
    const result: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
      if (item === undefined) continue;
      result[keyFor(key)] = freeFormMaps.has(key) ? convertMapValues(item, dates) : convert(item, keyFor, dates);
    }
    return result;
  }
  return value;
}

function convertMapValues(value: unknown, dates: (d: Date) => unknown): unknown {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return value;
  return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, v instanceof Date ? dates(v) : v]));
}

const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

export function snakeCaseKeys(value: unknown): unknown {
  return convert(value, snakeCase, pythonTimestamp);
}

/** Kubernetes JSON as fetched raw (timestamps are strings) to the upstream wire format. */
export function toUpstreamWire(value: unknown): unknown {
  return convert(
    JSON.parse(JSON.stringify(value), (_key, v: unknown) => (typeof v === 'string' && rfc3339.test(v) ? new Date(v) : v)),
    snakeCase,
    pythonTimestamp,
  );
}

export function camelCaseKeys(value: unknown): unknown {
  return convert(value, camelCase, (d) => d);
}

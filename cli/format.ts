import { stringify as toYaml } from 'yaml';
import { UsageError } from './errors.ts';

/** `k8s`: the raw Kubernetes object, as `kubectl get -o json` shows it (upstream's `-o json`). */
export type OutputFormat = 'table' | 'json' | 'yaml' | 'name' | 'k8s';

export function parseOutputFormat<F extends OutputFormat>(raw: string | undefined, allowed: readonly F[], fallback: F): F {
  if (raw === undefined) return fallback;
  const format = raw.toLowerCase() as F;
  if (!allowed.includes(format)) throw new UsageError(`--output: "${raw}" is not one of ${allowed.join(', ')}`);
  return format;
}

/** JSON or YAML of a server response, for scripts; always ends with a newline. */
export function serialize(data: unknown, format: 'json' | 'yaml'): string {
  if (format === 'json') return `${JSON.stringify(data, null, 2)}\n`;
  return toYaml(data, { lineWidth: 0 });
}

/** Plain aligned columns, two spaces apart; the last column is not padded so lines carry no trailing blanks. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((header, i) => Math.max(header.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

/** `42s`, `5m 3s`, `2h 10m`, `3d 4h`: the two largest units are enough to read at a glance. */
export function humanDuration(seconds: number | undefined | null): string {
  if (seconds === undefined || seconds === null || !Number.isFinite(seconds)) return '-';
  let rest = Math.max(0, Math.round(seconds));
  const units: [string, number][] = [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ];
  const parts: string[] = [];
  for (const [unit, size] of units) {
    if (rest >= size || (unit === 's' && parts.length === 0)) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(' ');
}

/** `5s ago`, `3m ago`, `2h ago`, `4d ago`, like kubectl's AGE with a word to make it read as a time. */
export function relativeAge(iso: string | undefined | null, now: Date = new Date()): string {
  if (!iso) return '-';
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return iso;
  const seconds = Math.max(0, Math.round((now.getTime() - then) / 1000));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ago`;
  return `${Math.floor(seconds / 86400)}d ago`;
}

export function humanBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = -1;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}

/** A command line as a shell would show it, quoting only the words that need it. */
export function shellWords(words: string[] | undefined): string {
  if (!words?.length) return '';
  return words.map((word) => (/^[-\w./=:@%+,]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** `Key:   value` lines for the human view of one object; empty values are left out. */
export function fields(pairs: [string, string | undefined][]): string {
  const shown = pairs.filter(([, value]) => value !== undefined && value !== '');
  const width = Math.max(...shown.map(([key]) => key.length)) + 2;
  return shown.map(([key, value]) => `${`${key}:`.padEnd(width)}${value}`).join('\n') + '\n';
}

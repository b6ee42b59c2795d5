import { UsageError } from './errors.ts';
import { closest } from './suggest.ts';

/** One flag of a command. Long names are written without dashes: `name` is `--name`. */
export interface OptionSpec {
  name: string;
  short?: string;
  /** Other long names, e.g. `kbatch-url` for `url`, `stream` for `follow` (upstream spellings). */
  aliases?: string[];
  /** `string` options take a value (`--name x`, `--name=x`); `boolean` ones do not (`--wait`, `--no-wait`). */
  type: 'string' | 'boolean';
  /** Shown as repeatable in help; every value is kept either way and `string()` returns the last. */
  repeatable?: boolean;
  /** Placeholder shown in help, e.g. `NAME`. */
  value?: string;
  help: string;
}

/** The result of parsing: positionals in order, string options as every value given, booleans as set. */
export class ParsedArgs {
  constructor(
    readonly positionals: string[],
    private readonly values: Map<string, string[]>,
    private readonly flags: Map<string, boolean>,
  ) {}

  /** The last value of a string option: a later flag wins, so an alias can be overridden. */
  string(name: string): string | undefined {
    const values = this.values.get(name);
    return values?.[values.length - 1];
  }

  strings(name: string): string[] {
    return this.values.get(name) ?? [];
  }

  flag(name: string): boolean {
    return this.flags.get(name) ?? false;
  }

  has(name: string): boolean {
    return this.values.has(name) || this.flags.has(name);
  }

  /** An integer option, checked against bounds; a bad value is a usage error naming the flag. */
  integer(name: string, min: number, max: number): number | undefined {
    const raw = this.string(name);
    if (raw === undefined) return undefined;
    const value = Number(raw);
    if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(value)) throw new UsageError(`--${name}: "${raw}" is not an integer`);
    if (value < min || value > max) throw new UsageError(`--${name}: must be between ${min} and ${max}, got ${value}`);
    return value;
  }
}

function indexSpecs(specs: OptionSpec[]) {
  const byLong = new Map<string, OptionSpec>();
  const byShort = new Map<string, OptionSpec>();
  for (const spec of specs) {
    for (const long of [spec.name, ...(spec.aliases ?? [])]) byLong.set(long, spec);
    if (spec.short) byShort.set(spec.short, spec);
  }
  return { byLong, byShort };
}

const booleanWords: Record<string, boolean> = {
  true: true,
  yes: true,
  '1': true,
  on: true,
  false: false,
  no: false,
  '0': false,
  off: false,
};

/**
 * A deliberately small parser: `--long value`, `--long=value`, `-s value`, `-s=value`, `--flag`,
 * `--no-flag`, and `--` to end options. A string option always takes the next token as its value,
 * so `--args '["-v"]'` or `--since -1h` work. Unknown flags are usage errors (exit 2).
 */
export function parseArgs(argv: string[], specs: OptionSpec[]): ParsedArgs {
  const { byLong, byShort } = indexSpecs(specs);
  const positionals: string[] = [];
  const values = new Map<string, string[]>();
  const flags = new Map<string, boolean>();

  const setValue = (spec: OptionSpec, value: string) => {
    values.set(spec.name, [...(values.get(spec.name) ?? []), value]);
  };

  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (token === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!token.startsWith('-') || token === '-') {
      positionals.push(token);
      continue;
    }
    const isLong = token.startsWith('--');
    const body = token.slice(isLong ? 2 : 1);
    const eq = body.indexOf('=');
    const key = eq === -1 ? body : body.slice(0, eq);
    const inline = eq === -1 ? undefined : body.slice(eq + 1);
    let spec = isLong ? byLong.get(key) : byShort.get(key);
    let negated = false;
    if (!spec && isLong && key.startsWith('no-')) {
      const positive = byLong.get(key.slice(3));
      if (positive?.type === 'boolean') {
        spec = positive;
        negated = true;
      }
    }
    if (!spec) {
      const guess = isLong ? closest(key, byLong.keys()) : undefined;
      throw new UsageError(`unknown option ${isLong ? '--' : '-'}${key}${guess ? ` (did you mean --${guess}?)` : ''}`);
    }
    const spelled = `${isLong ? '--' : '-'}${key}`;
    if (spec.type === 'boolean') {
      let value = !negated;
      if (inline !== undefined) {
        const word = booleanWords[inline.toLowerCase()];
        if (word === undefined || negated) throw new UsageError(`${spelled} does not take a value like "${inline}"`);
        value = word;
      }
      flags.set(spec.name, value);
      continue;
    }
    if (inline !== undefined) {
      setValue(spec, inline);
      continue;
    }
    if (i + 1 >= argv.length) throw new UsageError(`${spelled} needs a value${spec.value ? ` (${spec.value})` : ''}`);
    setValue(spec, argv[++i]!);
  }
  return new ParsedArgs(positionals, values, flags);
}

/** Durations as people type them: `90`, `90s`, `15m`, `2h`, `1d`, `1h30m`. Returns whole seconds. */
export function parseDuration(raw: string, flag: string): number {
  const text = raw.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const units: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)([smhd])/g)];
  if (!parts.length || parts.map((p) => p[0]).join('') !== text) {
    throw new UsageError(`${flag}: "${raw}" is not a duration (use seconds, or e.g. 90s, 15m, 2h, 1d)`);
  }
  return Math.round(parts.reduce((sum, p) => sum + Number(p[1]) * units[p[2]!]!, 0));
}

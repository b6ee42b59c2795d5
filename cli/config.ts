import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { CliError, UsageError } from './errors.ts';

export type Env = Record<string, string | undefined>;

/** The file upstream `kbatch configure` writes, byte-compatible so both CLIs share it. */
export interface StoredConfig {
  kbatch_url: string | null;
  token: string | null;
  /** The Hub API the token was checked against (`configure --jupyterhub-url`); upstream's CLI ignores the extra key. */
  jupyterhub_url?: string | null;
}

export type Source = 'flag' | 'env' | 'file';

export interface Connection {
  url: string;
  token: string | undefined;
  urlSource: Source;
  tokenSource: Source | undefined;
}

function nonEmpty(value: string | undefined | null): string | undefined {
  return value === undefined || value === null || value.trim() === '' ? undefined : value.trim();
}

/** `$XDG_CONFIG_HOME/kbatch/config.json`, `%APPDATA%` on Windows, else `~/.config`. */
export function configPath(env: Env): string {
  const base = nonEmpty(env.XDG_CONFIG_HOME) ?? nonEmpty(env.APPDATA) ?? join(nonEmpty(env.HOME) ?? homedir(), '.config');
  return join(base, 'kbatch', 'config.json');
}

export function readConfigFile(path: string): Partial<StoredConfig> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new CliError(`cannot read ${path}: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new CliError(`${path} is not valid JSON`, 1, 'run kbatch configure again to rewrite it');
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new CliError(`${path} must hold a JSON object`);
  const { kbatch_url, token, jupyterhub_url } = parsed as Record<string, unknown>;
  return {
    kbatch_url: typeof kbatch_url === 'string' ? kbatch_url : null,
    token: typeof token === 'string' ? token : null,
    ...(typeof jupyterhub_url === 'string' ? { jupyterhub_url } : {}),
  };
}

/** `{"kbatch_url": "...", "token": null}`: the spacing of Python's json.dumps, so the file reads the same whichever CLI wrote it. */
function pythonStyleJson(config: StoredConfig): string {
  return `{${Object.entries(config)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => `${JSON.stringify(key)}: ${JSON.stringify(value)}`)
    .join(', ')}}`;
}

/** Writes the config readable by the owner only: it may hold a Hub token. Atomic, so a crash never leaves half a file. */
export function writeConfigFile(path: string, config: StoredConfig): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, pythonStyleJson(config), { mode: 0o600 });
  chmodSync(temporary, 0o600);
  renameSync(temporary, path);
}

/** An http(s) URL with exactly one trailing slash, so API paths resolve relative to it. */
export function normalizeUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new UsageError(`"${raw}" is not a URL (expected e.g. https://hub.example.org/services/kbatch/)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`"${raw}" must be an http:// or https:// URL`);
  url.search = '';
  url.hash = '';
  return url.toString().replace(/\/*$/, '/');
}

/**
 * URL and token, each from the first place that has one: flag, then environment, then the config
 * file. Environment beats the file (unlike upstream) so a notebook's JUPYTERHUB_API_TOKEN, which
 * the Hub rotates, is never shadowed by a stale token saved earlier.
 */
export function resolveConnection(flags: { url?: string; token?: string }, env: Env, file: Partial<StoredConfig>): Connection | undefined {
  const urlCandidates: [string | undefined, Source][] = [
    [nonEmpty(flags.url), 'flag'],
    [nonEmpty(env.KBATCH_URL), 'env'],
    [nonEmpty(file.kbatch_url), 'file'],
  ];
  const tokenCandidates: [string | undefined, Source][] = [
    [nonEmpty(flags.token), 'flag'],
    [nonEmpty(env.JUPYTERHUB_API_TOKEN), 'env'],
    [nonEmpty(file.token), 'file'],
  ];
  const url = urlCandidates.find(([value]) => value !== undefined);
  if (!url) return undefined;
  const token = tokenCandidates.find(([value]) => value !== undefined);
  return { url: normalizeUrl(url[0]!), urlSource: url[1], token: token?.[0], tokenSource: token?.[1] };
}

import { mkdtempSync, readFileSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { configPath, normalizeUrl, readConfigFile, resolveConnection, writeConfigFile } from '../../cli/config.ts';
import { UsageError } from '../../cli/errors.ts';

const paths = suite('where the config file lives');
paths('$XDG_CONFIG_HOME/kbatch/config.json when set', () => {
  assert.is(configPath({ XDG_CONFIG_HOME: '/x', HOME: '/home/a' }), '/x/kbatch/config.json');
});
paths('~/.config/kbatch/config.json otherwise', () => {
  assert.is(configPath({ HOME: '/home/a' }), '/home/a/.config/kbatch/config.json');
  assert.is(configPath({ XDG_CONFIG_HOME: '', HOME: '/home/a' }), '/home/a/.config/kbatch/config.json');
});
paths.run();

const urls = suite('URL normalisation');
urls('always ends with exactly one slash', () => {
  assert.is(normalizeUrl('https://hub.example.org/services/kbatch'), 'https://hub.example.org/services/kbatch/');
  assert.is(normalizeUrl('https://hub.example.org/services/kbatch//'), 'https://hub.example.org/services/kbatch/');
  assert.is(normalizeUrl(' http://127.0.0.1:8080 '), 'http://127.0.0.1:8080/');
});
urls('drops a query or fragment, which would break relative paths', () => {
  assert.is(normalizeUrl('https://h/services/kbatch?x=1#y'), 'https://h/services/kbatch/');
});
urls('rejects what is not an http(s) URL as a usage error', () => {
  assert.throws(
    () => normalizeUrl('hub.example.org'),
    (e: unknown) => e instanceof UsageError,
  );
  assert.throws(
    () => normalizeUrl('file:///etc'),
    (e: unknown) => e instanceof UsageError,
  );
});
urls.run();

const precedence = suite('URL and token precedence: flag > environment > file');
const file = { kbatch_url: 'http://file/', token: 'file-token' };
const env = { KBATCH_URL: 'http://env/', JUPYTERHUB_API_TOKEN: 'env-token' };
precedence('flags win over everything', () => {
  const c = resolveConnection({ url: 'http://flag', token: 'flag-token' }, env, file)!;
  assert.equal([c.url, c.token, c.urlSource, c.tokenSource], ['http://flag/', 'flag-token', 'flag', 'flag']);
});
precedence('the environment wins over the file', () => {
  const c = resolveConnection({}, env, file)!;
  assert.equal([c.url, c.token, c.urlSource, c.tokenSource], ['http://env/', 'env-token', 'env', 'env']);
});
precedence('the file fills what neither flag nor environment gives', () => {
  const c = resolveConnection({}, {}, file)!;
  assert.equal([c.url, c.token], ['http://file/', 'file-token']);
  const mixed = resolveConnection({}, { JUPYTERHUB_API_TOKEN: 'env-token' }, file)!;
  assert.equal([mixed.url, mixed.token], ['http://file/', 'env-token']);
});
precedence('URL and token are resolved independently', () => {
  const c = resolveConnection({ token: 'flag-token' }, { KBATCH_URL: 'http://env' }, file)!;
  assert.equal([c.url, c.token], ['http://env/', 'flag-token']);
});
precedence('empty values count as unset', () => {
  const c = resolveConnection({ url: '' }, { KBATCH_URL: '', JUPYTERHUB_API_TOKEN: '' }, file)!;
  assert.equal([c.url, c.token], ['http://file/', 'file-token']);
});
precedence('no URL anywhere is undefined; no token is allowed', () => {
  assert.is(resolveConnection({}, {}, {}), undefined);
  assert.is(resolveConnection({ url: 'http://x' }, {}, { token: null })!.token, undefined);
});
precedence.run();

const files = suite('the config file');
files('is written owner-only, in the upstream format, creating its directory', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kbatch-cli-config-'));
  const path = join(dir, 'kbatch', 'config.json');
  writeConfigFile(path, { kbatch_url: 'http://h/services/kbatch/', token: 'abc' });
  assert.is(statSync(path).mode & 0o777, 0o600);
  assert.is(readFileSync(path, 'utf8'), '{"kbatch_url": "http://h/services/kbatch/", "token": "abc"}');
  assert.equal(readConfigFile(path), { kbatch_url: 'http://h/services/kbatch/', token: 'abc' });
});
files('an existing world-readable file becomes 0600 when rewritten', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kbatch-cli-config-'));
  mkdirSync(join(dir, 'kbatch'));
  const path = join(dir, 'kbatch', 'config.json');
  writeFileSync(path, '{}', { mode: 0o644 });
  writeConfigFile(path, { kbatch_url: 'http://h/', token: null });
  assert.is(statSync(path).mode & 0o777, 0o600);
  assert.equal(readConfigFile(path), { kbatch_url: 'http://h/', token: null });
});
files('a missing file is empty; a broken one is an error, not a crash', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kbatch-cli-config-'));
  assert.equal(readConfigFile(join(dir, 'none.json')), {});
  writeFileSync(join(dir, 'bad.json'), '{not json');
  assert.throws(() => readConfigFile(join(dir, 'bad.json')), /not valid JSON/);
});
files('a file written by upstream kbatch is read as is', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kbatch-cli-config-'));
  writeFileSync(join(dir, 'c.json'), '{"kbatch_url": "https://hub/services/kbatch/", "token": null}');
  assert.equal(readConfigFile(join(dir, 'c.json')), { kbatch_url: 'https://hub/services/kbatch/', token: null });
});
files.run();

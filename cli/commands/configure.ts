import { KbatchApi } from '../api.ts';
import type { Command } from '../command.ts';
import { configPath, normalizeUrl, writeConfigFile } from '../config.ts';
import { UsageError } from '../errors.ts';

export const configureCommand: Command = {
  kind: 'command',
  name: 'configure',
  aliases: ['login'],
  summary: 'Check a kbatch URL and token, and save them for future commands.',
  description:
    'Check a kbatch URL and token (GET {url}authorized), then write them to\n' +
    '$XDG_CONFIG_HOME/kbatch/config.json (default ~/.config), readable by you only.\n' +
    'A token taken from $JUPYTERHUB_API_TOKEN is used for the check but not saved (as upstream kbatch):\n' +
    'notebooks get a fresh one from the environment. Afterwards $KBATCH_URL and $JUPYTERHUB_API_TOKEN\n' +
    'still override the file, and --url/--token override everything.',
  positionals: [{ name: 'URL', optional: true }],
  options: [],
  examples: ['kbatch configure --url https://hub.example.org/services/kbatch/ --token $MY_TOKEN', 'kbatch login https://hub.example.org/services/kbatch/'],
  async run(ctx) {
    const positional = ctx.args.positionals[0];
    const flag = ctx.args.string('url');
    if (positional && flag && normalizeUrl(positional) !== normalizeUrl(flag)) throw new UsageError('give the URL once: as an argument or with --url');
    const raw = positional ?? flag ?? ctx.io.env.KBATCH_URL;
    if (!raw) throw new UsageError('missing URL', 'usage: kbatch configure --url URL [--token TOKEN]');
    const url = normalizeUrl(raw);
    const savedToken = ctx.args.string('token') || undefined;
    const checkToken = savedToken ?? (ctx.io.env.JUPYTERHUB_API_TOKEN || undefined);
    const me = await KbatchApi.at(url, checkToken, ctx.io.fetch).whoAmI();
    const path = configPath(ctx.io.env);
    writeConfigFile(path, { kbatch_url: url, token: savedToken ?? null });
    ctx.out(`Logged in to ${url} as ${me.name}${me.namespace ? ` (namespace ${me.namespace})` : ''}\n`);
    ctx.out(`Wrote config to ${path}\n`);
    if (!savedToken && checkToken) ctx.err('kbatch: the token from $JUPYTERHUB_API_TOKEN was not saved; it is read from the environment each time\n');
    return 0;
  },
};

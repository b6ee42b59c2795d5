import { KbatchApi } from '../api.ts';
import type { Command } from '../command.ts';
import { configPath, normalizeUrl, writeConfigFile } from '../config.ts';
import { CliError, UsageError } from '../errors.ts';

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
  options: [
    {
      name: 'jupyterhub-url',
      aliases: ['hub-url'],
      type: 'string',
      value: 'URL',
      help: "the Hub's API (e.g. https://hub.example.org/hub/api): the token is checked there too, and the URL saved",
    },
  ],
  examples: [
    'kbatch configure --url https://hub.example.org/services/kbatch/ --token $MY_TOKEN',
    'kbatch login https://hub.example.org/services/kbatch/',
    'kbatch configure --kbatch-url=http://localhost:8000/services/kbatch --jupyterhub-url=http://localhost:8000/hub/api --token=$MY_TOKEN',
  ],
  async run(ctx) {
    const positional = ctx.args.positionals[0];
    const flag = ctx.args.string('url');
    if (positional && flag && normalizeUrl(positional) !== normalizeUrl(flag))
      throw new UsageError('give the URL once: as an argument or with --url');
    const raw = positional ?? flag ?? ctx.io.env.KBATCH_URL;
    if (!raw) throw new UsageError('missing URL', 'usage: kbatch configure --url URL [--token TOKEN]');
    const url = normalizeUrl(raw);
    const savedToken = ctx.args.string('token') || undefined;
    const checkToken = savedToken ?? (ctx.io.env.JUPYTERHUB_API_TOKEN || undefined);
    const hubRaw = ctx.args.string('jupyterhub-url');
    const hubUrl = hubRaw === undefined ? undefined : normalizeUrl(hubRaw);
    // The Hub first: a token it does not know is told apart from a kbatch that refuses it.
    const hubUser = hubUrl ? await KbatchApi.hubUser(hubUrl, checkToken, ctx.io.fetch) : undefined;
    const me = await KbatchApi.at(url, checkToken, ctx.io.fetch).whoAmI();
    if (hubUser && hubUser.name !== me.name)
      throw new CliError(
        `the Hub at ${hubUrl} knows this token as ${hubUser.name}, but kbatch at ${url} as ${me.name}`,
        1,
        'is --jupyterhub-url the Hub that kbatch uses?',
      );
    const path = configPath(ctx.io.env);
    writeConfigFile(path, { kbatch_url: url, token: savedToken ?? null, ...(hubUrl ? { jupyterhub_url: hubUrl } : {}) });
    if (hubUser) ctx.out(`The Hub at ${hubUrl} knows the token as ${hubUser.name}\n`);
    ctx.out(`Logged in to ${url} as ${me.name}${me.namespace ? ` (namespace ${me.namespace})` : ''}\n`);
    ctx.out(`Wrote config to ${path}\n`);
    if (!savedToken && checkToken)
      ctx.err('kbatch: the token from $JUPYTERHUB_API_TOKEN was not saved; it is read from the environment each time\n');
    return 0;
  },
};

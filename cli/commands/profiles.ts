import type { Profile } from '../api.ts';
import { outputOption, type Command } from '../command.ts';
import { parseOutputFormat, serialize, table } from '../format.ts';

function quantities(values: Record<string, string | number> | null | undefined): string {
  const entries = Object.entries(values ?? {});
  return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(',') : '-';
}

export function profileTable(profiles: Record<string, Profile>): string {
  return table(
    ['NAME', 'IMAGE', 'REQUESTS', 'LIMITS', 'DESCRIPTION'],
    Object.entries(profiles).map(([name, p]) => [
      name,
      p?.image ?? '-',
      quantities(p?.resources?.requests),
      quantities(p?.resources?.limits),
      p?.description ?? p?.display_name ?? '',
    ]),
  );
}

export const profilesCommand: Command = {
  kind: 'command',
  name: 'profiles',
  summary: 'Show the job profiles the server offers (use one with job submit --profile).',
  options: [outputOption(['table', 'json', 'yaml'], 'table')],
  async run(ctx) {
    const format = parseOutputFormat(ctx.args.string('output'), ['table', 'json', 'yaml'], 'table');
    const profiles = await ctx.api().profiles();
    if (format !== 'table') ctx.out(serialize(profiles, format));
    else if (!Object.keys(profiles).length) ctx.err('The server defines no profiles.\n');
    else ctx.out(profileTable(profiles));
    return 0;
  },
};

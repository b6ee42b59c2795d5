// Imported, not read at run time, so the bundle (dist/kbatch.mjs) carries the version it was built from.
import packageJson from '../../package.json' with { type: 'json' };
import type { CliIo, Command } from '../command.ts';
import { describeError } from '../errors.ts';

export function clientVersion(): string {
  return (packageJson as { version?: string }).version ?? 'unknown';
}

export const versionCommand: Command = {
  kind: 'command',
  name: 'version',
  summary: 'Show the client version, and the server version when one is configured.',
  options: [],
  async run(ctx) {
    ctx.out(`kbatch ${clientVersion()}\n`);
    // The server part is informational: no URL or no server still exits 0.
    try {
      const api = ctx.api();
      ctx.out(`server ${(await api.serverVersion(5000)) ?? 'unknown'} at ${api.baseUrl}\n`);
    } catch (error) {
      ctx.out(`server: ${describeError(error).message}\n`);
    }
    return 0;
  },
};

export async function printVersion(io: CliIo): Promise<number> {
  io.stdout.write(`kbatch ${clientVersion()}\n`);
  return 0;
}

import * as functions from '@google-cloud/functions-framework';
import { createDeps, createHandler } from './lib/app.ts';
import { ConfigError, loadSettings } from './lib/config.ts';
import { serveFunction } from './lib/http/entrypoint.ts';

/** All routes in one process: `npm start` locally, and the server the tests drive. */
async function main(): Promise<void> {
  let settings;
  let deps;
  try {
    settings = loadSettings();
    deps = await createDeps(settings);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`kbatch: configuration error: ${error.message}`);
      process.exit(2);
    }
    throw error;
  }
  const handler = createHandler('all', deps);
  functions.http('kbatch', handler);
  const server = await serveFunction('kbatch', handler, {
    port: settings.port,
    host: settings.host,
    shutdownGraceSeconds: settings.shutdownGraceSeconds,
    onShutdown: async () => deps.backend.close?.(),
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : settings.port;
  const url = `http://${settings.host}:${port}${settings.prefix}`;
  console.error(`kbatch listening on ${url} (backend: ${deps.backend.kind}, auth: ${settings.auth})`);
  if (settings.backend === 'local') console.error(`kbatch: local backend keeps jobs under ${settings.localDataDir}; try: KBATCH_URL=${url} npx kbatch job list`);
  if (settings.uploadSecretIsEphemeral) console.error('kbatch: KBATCH_UPLOAD_SECRET is not set; upload references are valid for this process only');
  // Lets a parent process (the tests) learn the port when PORT=0.
  if (process.send) process.send({ ready: true, port, url });
}

await main();

import * as functions from '@google-cloud/functions-framework';
import { createDeps, createHandler } from '../../lib/app.ts';
import { loadSettings } from '../../lib/config.ts';
import { isMainModule, serveFunction } from '../../lib/http/entrypoint.ts';

export const target = 'kbatch-uploads';
const settings = loadSettings();
const deps = await createDeps(settings);
export const handler = createHandler('uploads', deps);
functions.http(target, handler);

if (isMainModule(import.meta.url)) {
  await serveFunction(target, handler, { port: settings.port, host: settings.host, shutdownGraceSeconds: settings.shutdownGraceSeconds });
  console.error(`${target} listening on ${settings.host}:${settings.port} (${deps.backend.kind} backend)`);
}

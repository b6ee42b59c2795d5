import { isMainModule, main } from '../../lib/http/main.ts';

/** The kbatch-uploads Knative Service: its routes, registered as a functions-framework target. */
export const target = 'kbatch-uploads';
export const handler = await main({ target, routes: 'uploads', serve: isMainModule(import.meta.url) });

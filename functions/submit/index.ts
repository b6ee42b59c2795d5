import { isMainModule, main } from '../../lib/http/main.ts';

/** The kbatch-submit Knative Service: its routes, registered as a functions-framework target. */
export const target = 'kbatch-submit';
export const handler = await main({ target, routes: 'submit', serve: isMainModule(import.meta.url) });

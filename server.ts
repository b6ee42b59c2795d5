import { main } from './lib/http/main.ts';

/** All routes in one process: `npm start` locally, and the server the tests drive. */
await main({ target: 'kbatch', routes: 'all', serve: true });

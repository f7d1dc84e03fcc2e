// Gateway API: the kinds (api.ts), the compiler (compile.ts), the router (route.ts), the compiler's
// input from objects (world.ts) and the conformance corpus (corpus.ts).
export * from './api.js';
export * from './compile.js';
export * from './route.js';
export * from './world.js';

'use strict'

// The layers of lib/, from the bottom up: a folder imports only the folders below it (and anything inside itself),
// type imports included. `npm run lint` checks it with dependency-cruiser. CONTRIBUTING.md says what each holds.
const LAYERS = ['core', 'protocol', 'observe', 'stream', 'stores', 'channels', 'fastify', 'testing']

const above = (layer) => LAYERS.slice(LAYERS.indexOf(layer) + 1)

module.exports = {
  forbidden: [
    ...LAYERS.filter((layer) => above(layer).length > 0).map((layer) => ({
      name: `${layer}-imports-below`,
      comment: `lib/${layer}/ imports only the layers below it (${LAYERS.slice(0, LAYERS.indexOf(layer)).join(', ') || 'none'})`,
      severity: 'error',
      from: { path: `^lib/${layer}/` },
      to: { path: `^lib/(${above(layer).join('|')})/` }
    })),
    {
      name: 'stores-and-streams-apart',
      comment: 'a store knows nothing of streams: lib/stores/ never imports lib/stream/ (nor the other way, by the layers)',
      severity: 'error',
      from: { path: '^lib/stores/' },
      to: { path: '^lib/stream/' }
    },
    {
      name: 'lib-in-layers',
      comment: 'every file of lib/ is in a layer folder (or is the client), and none imports the package entries (index.ts, redis.ts, ...)',
      severity: 'error',
      from: { path: '^lib/', pathNot: '^lib/client/' },
      to: { path: [`^lib/(?!(${LAYERS.join('|')})/)`, '^[^/]+\\.ts$'] }
    },
    {
      // The client layer: fastify-sse-h2/client loads in a browser as an ES module without a bundler, so it imports
      // only its own files (relative, with their .js): nothing of the server's layers, no Node.js module, no package.
      name: 'client-stands-alone',
      comment: 'lib/client/ imports only lib/client/ (it runs in browsers), and no other folder of lib/ imports it',
      severity: 'error',
      from: { path: '^lib/client/' },
      to: { pathNot: '^lib/client/' }
    },
    {
      name: 'ioredis-only-in-the-redis-store',
      comment: 'ioredis is an optional peer dependency: only lib/stores/redis/ may load it',
      severity: 'error',
      from: { path: '^lib/', pathNot: '^lib/stores/redis/' },
      to: { path: 'node_modules/ioredis/' }
    }
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type imports are what a reader follows too.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^(dist|test|bench|types|examples)/' }
  }
}

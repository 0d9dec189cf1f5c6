// Runs one code block of the docs (README.md, docs/*.md, CONTRIBUTING.md) as a server, for test/readme.test.ts:
// `node readme-block.mjs <block.mjs>`.
// The block lives in an app that depends on the package by name, and is run as it is written, as an ES module.
// Before it runs, it is given what the docs' examples take for granted (`app`, `sse`, `require`, and the names
// they leave to the reader, GIVEN below); after it, `app` listens on a free port of 127.0.0.1 (h2), and one
// JSON line on stdout says where, with the routes the block added. A block that makes its own app and listens
// (a whole program) is run directly instead, not through this file. Plain JavaScript: nothing to compile.
import { readFileSync, readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'

const [blockFile] = process.argv.slice(2)
const code = readFileSync(blockFile, 'utf8')
const require = createRequire(blockFile)
const Fastify = require('fastify')
const sse = require('fastify-sse-h2')

/** An endless source of `{ id, data }` events, one every 100 ms, as the docs' `ticks()` or `prices()`. */
async function * every100ms (name) {
  for (let n = 0; ; n++) {
    yield { id: String(n), data: { [name]: n } }
    await sleep(100)
  }
}

const ROWS = [1, 2, 3, 4, 5].map((id) => ({ id: String(id), title: `row ${id}` }))

/** What the docs' examples leave to the reader: a database, an event bus of the app, its users and their tokens. */
const GIVEN = {
  ticks: () => every100ms('tick'),
  source: () => every100ms('n'),
  prices: () => every100ms('price'),
  tiny: () => every100ms('tiny'),
  feedFor: (user) => every100ms(`for ${user.id}`),
  db: {
    // Each user's rooms (docs/steering.md's dashboard): none until they join one.
    rooms: new Map(),
    async roomsOf (user) { return [...(this.rooms.get(user) ?? [])] },
    async joinRoom (user, room) { this.rooms.set(user, new Set(this.rooms.get(user)).add(room)) },
    // The rows after an id, then waits for new ones until the signal aborts.
    async * rowsAfter (lastEventId, { signal }) {
      for (const row of ROWS) if (lastEventId === undefined || Number(row.id) > Number(lastEventId)) yield row
      await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))
    }
  },
  sessions: { find: async (id) => (id === 'session-1' ? { id: 1 } : undefined) },
  issueShortLivedToken: async (user) => `token-of-${user.id}`,
  verifyShortLivedToken: async (token) => (token?.startsWith('token-of-') ? { id: Number(token.slice(9)) } : undefined),
  error: new sse.errors.FST_SSE_INVALID_ID('a string with a line feed (\\n)')
}

// What browsers speak, so that page blocks can run on it: HTTP/2 over TLS, the certificate beside the block.
const https = { key: readFileSync('key.pem'), cert: readFileSync('cert.pem'), allowHTTP1: true }
const app = Fastify({ http2: true, https, logger: { level: 'warn' } })
const routes = []
app.addHook('onRoute', (route) => {
  for (const method of [route.method].flat()) if (method !== 'HEAD') routes.push({ method, url: route.url })
})
// Set by the app's authentication (docs/recipes.md shows two ways): here, user 1 until a block's own hook says.
app.decorateRequest('user', null)
app.addHook('onRequest', async (request) => { request.user = { id: 1 } })
// The page the page blocks run in. Its import map gives `fastify-sse-h2/client` as a browser loads it without a bundler:
// the package's ES module (dist/client, every import relative), through a module that records each client a block
// makes (and whether it opened), as the test's init script records each EventSource.
const clientFolder = join(dirname(require.resolve('fastify-sse-h2/package.json')), 'dist', 'client')
const clientFiles = new Set(readdirSync(clientFolder).filter((name) => name.endsWith('.js')))
const importMap = JSON.stringify({ imports: { 'fastify-sse-h2/client': '/__doctest/recorded-client.js' } })
const recordedClient = `import { EventStreamClient as Client } from './client/index.js'
export * from './client/index.js'
export class EventStreamClient extends Client {
  constructor (url, options) {
    super(url, options)
    this.addEventListener('open', () => { this.opened = true })
    window.__doctest.sources.push(this)
  }
}
`
app.get('/__doctest/page', (request, reply) => reply.type('text/html; charset=utf-8')
  .send(`<!doctype html><title>doctest</title><script type="importmap">${importMap}</script>`))
app.get('/__doctest/recorded-client.js', (request, reply) => reply.type('text/javascript; charset=utf-8').send(recordedClient))
app.get('/__doctest/client/:file', (request, reply) => {
  if (!clientFiles.has(request.params.file)) return reply.code(404).send()
  return reply.type('text/javascript; charset=utf-8').send(readFileSync(join(clientFolder, request.params.file)))
})
// A block that registers the plugin (with its options) gets the app without it.
if (!/\.register\(\s*sse\b/.test(code)) await app.register(sse)

Object.assign(globalThis, GIVEN, { app, sse, Fastify, require })
await import(pathToFileURL(blockFile).href)
await app.listen({ port: 0, host: '127.0.0.1' })
process.stdout.write(JSON.stringify({
  doctest: 'listening',
  origin: `https://127.0.0.1:${app.server.address().port}`,
  routes: routes.filter((route) => !route.url.startsWith('/__doctest'))
}) + '\n')

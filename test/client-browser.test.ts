/// <reference lib="dom" />
import { teardown, test, type Test } from 'tap'
import { existsSync, readdirSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import type { FastifyInstance } from 'fastify'
import cors from '@fastify/cors'
import { chromium, type Browser, type Page } from 'playwright-core'
import { startServer, type Protocol } from './helpers/server'
import { TcpProxy } from './helpers/tcp-proxy'
import { openStream } from './helpers/client'
import { binaryPath, missingService, mustSkip } from './helpers/services'
import { within } from './helpers/wait'
import { CODES, KINDS, startFeed, survives, type Received } from './helpers/refusal-feed'

// fastify-sse-h2/client in Chromium, loaded as a page loads it without a bundler: an import map names the package's
// ES module build (dist/client, served as it is; its imports are all relative). What the server saw and what the page
// shows are what the tests assert.

const skip = mustSkip(missingService('chromium'))
const WAIT_MS = 30_000
const CLIENT = resolve(__dirname, '../dist/client')
const HEARTBEAT = 500

// The page's script records what its client does (window.seen) and keeps the client (window.feed).
const PAGE = `<!doctype html><title>client</title>
<script type="importmap">{ "imports": { "fastify-sse-h2/client": "/client/index.js" } }</script>
<script type="module">
import { EventStreamClient } from 'fastify-sse-h2/client'
window.follow = (url, options) => {
  const seen = { events: [], errors: [], opens: 0 }
  const feed = new EventStreamClient(url, options)
  feed.onopen = () => { seen.opens++ }
  feed.onmessage = (event) => { seen.events.push([event.lastEventId, event.data]) }
  feed.onerror = (event) => {
    seen.errors.push({ message: event.message, status: event.status, code: event.code, error: String(event.error), at: Date.now() })
  }
  Object.assign(window, { feed, seen })
}
</script>`

interface PageError { message: string, status?: number, code?: string, error: string, at: number }
interface Seen { events: Received, errors: PageError[], opens: number }
type PageWindow = Window & { follow: (url: string, options?: object) => void, seen: Seen }

/** The page, and the client's files from the build, as the package ships them. */
function pageRoutes (app: FastifyInstance): void {
  const files = readdirSync(CLIENT).filter((name) => name.endsWith('.js'))
  app.get('/', (request, reply) => reply.type('text/html; charset=utf-8').send(PAGE))
  app.get<{ Params: { file: string } }>('/client/:file', async (request, reply) => {
    if (!files.includes(request.params.file)) return await reply.code(404).send()
    return await reply.type('text/javascript; charset=utf-8').send(await readFile(resolve(CLIENT, request.params.file)))
  })
}

let browserPromise: Promise<Browser> | undefined

async function launch (): Promise<Browser> {
  browserPromise ??= chromium.launch({
    executablePath: binaryPath('chromium'),
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    timeout: WAIT_MS
  })
  return await browserPromise
}

teardown(async () => {
  if (browserPromise !== undefined) await within((await browserPromise).close(), 'the browser to close', WAIT_MS)
})

interface OpenPage {
  page: Page
  /** Uncaught errors of the page's script. */
  errors: string[]
  seen: () => Promise<Seen>
  /** Waits until `check(seen)` holds in the page; `arg` is handed to it. */
  until: <A>(check: (seen: Seen, arg: A) => boolean, arg: A, timeout?: number) => Promise<Seen>
}

async function openPage (t: Test, origin: string): Promise<OpenPage> {
  if (!existsSync(resolve(CLIENT, 'index.js'))) throw new Error(`${CLIENT}/index.js is missing: run npm run build first`)
  const context = await (await launch()).newContext({ ignoreHTTPSErrors: true })
  t.teardown(() => within(context.close(), 'the browser context to close', WAIT_MS))
  const page = await context.newPage()
  page.setDefaultTimeout(WAIT_MS)
  const errors: string[] = []
  page.on('pageerror', (error) => errors.push(error.message))
  await page.goto(`${origin}/`)
  await page.waitForFunction(() => 'follow' in window)
  const seen = async (): Promise<Seen> => await page.evaluate(() => (window as unknown as PageWindow).seen)
  return {
    page,
    errors,
    seen,
    until: async (check, arg, timeout = WAIT_MS) => {
      try {
        await page.waitForFunction(`(${check.toString()})(window.seen, ${JSON.stringify(arg)})`, undefined, { timeout })
      } catch (error) {
        throw new Error(`${(error as Error).message}; the page saw ${JSON.stringify(await seen().catch(() => undefined))}`)
      }
      return await seen()
    }
  }
}

test('an Authorization header from a headers function reaches the route, a fresh one at each connect', { skip }, async (t) => {
  const authorizations: Array<string | undefined> = []
  const server = await startServer(t, 'h2', (app) => {
    pageRoutes(app)
    app.get('/private', async (request, reply) => {
      authorizations.push(request.headers.authorization)
      if (request.headers.authorization === undefined) return await reply.code(401).send()
      return reply.sse([{ id: String(authorizations.length), data: request.headers.authorization }], { retry: 50 })
    })
  })
  const { page, errors, until } = await openPage(t, server.origin)
  await page.evaluate(() => {
    let token = 0
    ;(window as unknown as PageWindow).follow('/private', { headers: async () => ({ authorization: `Bearer token-${++token}` }) })
  })
  const seen = await until((seen) => seen.events.length >= 2, null)
  await page.evaluate(() => (window as unknown as { feed: { close: () => void } }).feed.close())
  t.same(authorizations.slice(0, 2), ['Bearer token-1', 'Bearer token-2'], 'the route saw each token, the function called at each connect')
  t.same(seen.events.slice(0, 2), [['1', 'Bearer token-1'], ['2', 'Bearer token-2']], 'and the page got the stream it answered')
  t.same(errors, [], 'no script error')
})

test('a stream opened by a POST with a body', { skip }, async (t) => {
  const requests: Array<{ body: unknown, lastEventId: string | undefined }> = []
  const server = await startServer(t, 'h2', (app) => {
    pageRoutes(app)
    app.post<{ Body: { prompt: string } }>('/ask', (request, reply) => {
      const lastEventId = request.headers['last-event-id'] as string | undefined
      requests.push({ body: request.body, lastEventId })
      const words = request.body.prompt.split(' ')
      const from = lastEventId === undefined ? 0 : Number(lastEventId) + 1
      return reply.sse(words.slice(from).map((word, i) => ({ id: String(from + i), data: word })), { retry: 50 })
    })
  })
  const { page, errors, until } = await openPage(t, server.origin)
  await page.evaluate(() => {
    (window as unknown as PageWindow).follow('/ask', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'what is a server-sent event' })
    })
  })
  const seen = await until((seen, count) => seen.events.length >= count && seen.opens >= 2, 5)
  await page.evaluate(() => (window as unknown as { feed: { close: () => void } }).feed.close())
  t.same(seen.events.map(([, data]) => data), ['what', 'is', 'a', 'server-sent', 'event'], 'each word once, in order')
  t.same(requests.slice(0, 2), [
    { body: { prompt: 'what is a server-sent event' }, lastEventId: undefined },
    { body: { prompt: 'what is a server-sent event' }, lastEventId: '4' }
  ], 'the body each time; the reconnect with its Last-Event-ID')
  t.same(errors, [], 'no script error')
})

test('a reload resumes exactly, from sessionStorage', { skip }, async (t) => {
  const lastEventIds: Array<string | undefined> = []
  const server = await startServer(t, 'h2', (app) => {
    pageRoutes(app)
    app.get('/news', (request, reply) => {
      lastEventIds.push(request.headers['last-event-id'] as string | undefined)
      return reply.sse(app.sse.channel('news'))
    })
  })
  const channel = server.app.sse.channel('news')
  const { page, errors, until } = await openPage(t, server.origin)
  const follow = async (): Promise<void> => {
    await page.evaluate(() => { (window as unknown as PageWindow).follow('/news', { storage: sessionStorage }) })
  }
  await follow()
  await until((seen) => seen.opens > 0, null)
  const ids = [await channel.publish('one'), await channel.publish('two')]
  t.same((await until((seen) => seen.events.length >= 2, null)).events, [[ids[0], 'one'], [ids[1], 'two']])

  await page.reload()
  await page.waitForFunction(() => 'follow' in window)
  ids.push(await channel.publish('three'))
  await follow()
  await until((seen) => seen.events.length >= 1, null)
  ids.push(await channel.publish('four'))
  const seen = await until((seen) => seen.events.length >= 2, null)
  t.same(seen.events, [[ids[2], 'three'], [ids[3], 'four']], 'the reloaded page got exactly the one published while it loaded, then the live one')
  t.equal(lastEventIds.at(-1), ids[1], 'it asked with the id the first page stored')
  t.same(errors, [], 'no script error')
})

test('every refusal is survived: the page gets exactly what it missed; each refusal an error with its code, not an open', { skip }, async (t) => {
  for (const kind of KINDS) {
    await t.test(kind, async (t) => {
      const feed = await startFeed(t, kind, 'h2', pageRoutes)
      const { page, errors, until } = await openPage(t, feed.origin)
      await page.evaluate(() => { (window as unknown as PageWindow).follow('/news') })
      await survives(t, kind, feed, {
        opened: async () => { await until((seen) => seen.opens > 0, null) },
        waitFor: async (count) => (await until((seen, count) => seen.events.length >= count, count)).events
      })
      const seen = await until(() => true, null)
      t.ok(seen.errors.some((error) => error.code === CODES[kind]), `the refusal's error said ${CODES[kind]}`)
      t.equal(seen.opens, 2, 'two opens: the first stream, and the one it came back with')
      t.same(errors, [], 'no script error')
    })
  }
})

test('a page of another origin whose CORS exposes no header: a refusal is known by its comment, and survived', { skip }, async (t) => {
  const pages = await startServer(t, 'h2', pageRoutes)
  const feeds = await startServer(t, 'h2', async (app) => {
    await app.register(cors, { origin: pages.origin })
    app.get('/hold', (request, reply) => { reply.sse() })
    app.get('/news', (request, reply) => reply.sse(app.sse.channel('news')))
  }, { plugin: { limits: { maxStreams: 1, retryAfter: 0 } } })
  const holder = await openStream(t, feeds, '/hold')
  const channel = feeds.app.sse.channel('news')
  const before = await channel.publish('before')
  const { page, errors, until } = await openPage(t, pages.origin)
  await page.evaluate(([url, lastEventId]) => { (window as unknown as PageWindow).follow(url, { lastEventId }) },
    [`${feeds.origin}/news`, before])
  const refused = await until((seen) => seen.errors.length > 0, null)
  t.match(refused.errors[0], { message: 'the server refused the stream: FST_SSE_TOO_MANY_STREAMS', code: 'FST_SSE_TOO_MANY_STREAMS', status: 200 },
    'the code, from the comment')
  const header = await page.evaluate(async (url) => (await fetch(url, { headers: { accept: 'text/event-stream' } })).headers.get('sse-refused'),
    `${feeds.origin}/news`)
  t.equal(header, null, 'the page cannot read the sse-refused header')
  const missed = await channel.publish('while refused')
  holder.close()
  const seen = await until((seen) => seen.events.length > 0, null)
  t.same(seen.events, [[missed, 'while refused']], 'back by itself, with exactly what it missed')
  t.same(errors, [], 'no script error')
})

// HTTP/1.1: the stream has a connection of its own, and the reconnect a new one. HTTP/2: the page's every request
// shares the one connection, and the browser puts the reconnect on it too. The client gives up each attempt left
// unanswered for twice the heartbeat interval, until Chromium finds the connection dead (an HTTP/2 PING sent before a
// request once the connection has read nothing for 10 s, unanswered for 10 s more) and opens another.
const HALF_OPEN: Array<{ protocol: Protocol, scheme: string, resumeWithin: number }> = [
  { protocol: 'http1', scheme: 'http', resumeWithin: WAIT_MS },
  { protocol: 'h2', scheme: 'https', resumeWithin: 60_000 }
]

for (const { protocol, scheme, resumeWithin } of HALF_OPEN) {
  test(`${protocol}: a connection that forwards nothing is noticed after about two heartbeats, and resumed with Last-Event-ID`, { skip }, async (t) => {
    const lastEventIds: Array<string | undefined> = []
    const server = await startServer(t, protocol, (app) => {
      pageRoutes(app)
      app.get('/news', (request, reply) => {
        lastEventIds.push(request.headers['last-event-id'] as string | undefined)
        return reply.sse(app.sse.channel('news'))
      })
    }, { plugin: { heartbeatInterval: HEARTBEAT } })
    const proxy = await TcpProxy.start(t, Number(new URL(server.origin).port))
    const channel = server.app.sse.channel('news')
    const { page, errors, until } = await openPage(t, `${scheme}://127.0.0.1:${proxy.port}`)
    await page.evaluate(() => { (window as unknown as PageWindow).follow('/news', { retry: { min: 100, max: 1000 } }) })
    await until((seen) => seen.opens > 0, null)
    const ids = [await channel.publish('one')]
    await until((seen) => seen.events.length >= 1, null)

    const frozenAt = Date.now()
    proxy.freeze()
    ids.push(await channel.publish('two'))
    const noticed = await until((seen) => seen.errors.length > 0, null)
    const [lost] = noticed.errors
    t.match(lost, { message: 'the connection was lost', error: /nothing received for \d+ ms, twice the server's heartbeat interval/ })
    t.ok(lost.at - frozenAt <= 3 * HEARTBEAT + 500, `noticed ${lost.at - frozenAt} ms after the freeze (heartbeat ${HEARTBEAT} ms)`)

    await until((seen) => seen.events.length >= 2, null, resumeWithin)
    const resumedAt = Date.now()
    ids.push(await channel.publish('three'))
    const seen = await until((seen) => seen.events.length >= 3, null)
    t.same(seen.events, [[ids[0], 'one'], [ids[1], 'two'], [ids[2], 'three']], 'nothing lost, nothing twice')
    t.equal(lastEventIds.at(-1), ids[0], 'the resuming request said the last id the page had')
    t.comment(`resumed ${resumedAt - frozenAt} ms after the freeze, after ${seen.errors.length} errors`)
    t.same(errors, [], 'no script error')
  })
}

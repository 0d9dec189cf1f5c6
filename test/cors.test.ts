/// <reference lib="dom" />
import { test } from 'tap'
import { EventEmitter } from 'node:events'
import cors from '@fastify/cors'
import type { FastifyInstance } from 'fastify'
import { chromium } from 'playwright-core'
import { startServer, type Protocol } from './helpers/server'
import { openStream } from './helpers/client'
import { binaryPath, missingService, mustSkip } from './helpers/services'
import { signalled, waitUntil, within } from './helpers/wait'

const skipBrowser = mustSkip(missingService('chromium', 'apt-get install chromium'))
// Generous: the machine has two cores, and the other test files run at the same time.
const WAIT_MS = 30_000
const PAGE_ORIGIN = 'https://page.example'

interface Gate {
  /** Emits `entered` when a request reaches the slow route's preHandler. */
  events: EventEmitter
  entered: number
  opened: Promise<void>
  open: () => void
}

/**
 * `/feed` holds a stream; `/slow` waits in a preHandler until app.close() ends the streams of `/feed`, so that its
 * stream would open once the server began to close. CORS for `origin`, with Retry-After readable by the page.
 */
function corsRoutes (origin: string, gate: Gate) {
  return async (app: FastifyInstance): Promise<void> => {
    await app.register(cors, { origin, exposedHeaders: ['retry-after'] })
    app.get('/feed', (request, reply) => {
      const stream = reply.sse()
      stream.send('hello')
      stream.signal.addEventListener('abort', () => {
        if ((stream.signal.reason as { code: string }).code === 'FST_SSE_SERVER_CLOSING') gate.open()
      })
    })
    app.get('/slow', {
      preHandler: async () => {
        gate.entered++
        gate.events.emit('entered')
        await gate.opened
      }
    }, (request, reply) => reply.sse())
  }
}

function newGate (): Gate {
  const { promise, resolve } = signalled()
  return { events: new EventEmitter(), entered: 0, opened: promise, open: resolve }
}

async function waitForEntered (gate: Gate, count: number): Promise<void> {
  await waitUntil(gate.events, 'entered', () => (gate.entered >= count ? true : undefined), `${count} requests in the preHandler`, WAIT_MS)
}

for (const protocol of ['h2c', 'http1'] as Protocol[]) {
  test(`${protocol}: refusals carry the CORS headers, as the streams do`, async (t) => {
    const gate = newGate()
    const server = await startServer(t, protocol, corsRoutes(PAGE_ORIGIN, gate), { plugin: { limits: { maxStreams: 1 } } })
    const headers = { origin: PAGE_ORIGIN }
    const open = await openStream(t, server, '/feed', { headers })
    t.equal(open.headers['access-control-allow-origin'], PAGE_ORIGIN, 'the stream')
    // Asked for as EventSource asks: the refusal it survives (200, a retry:, the end). Below, as curl asks: a 503.
    const refused = await openStream(t, server, '/feed', { headers })
    t.equal(refused.headers['sse-refused'], 'FST_SSE_TOO_MANY_STREAMS')
    t.equal(refused.headers['access-control-allow-origin'], PAGE_ORIGIN, 'a refusal past limits')
    t.equal(refused.headers['access-control-expose-headers'], 'retry-after')

    const slow = openStream(t, server, '/slow', { headers: { ...headers, accept: '*/*' } })
    await waitForEntered(gate, 1)
    const started = Date.now()
    await within(server.app.close(), 'app.close()')
    t.comment(`app.close() took ${Date.now() - started} ms`)
    const closing = await slow
    t.equal(closing.status, 503)
    t.equal(closing.headers['access-control-allow-origin'], PAGE_ORIGIN, 'a refusal while the server closes')
  })
}

test('a cross-origin page reads the 503 of a refused stream, and its EventSource is told to come back', { skip: skipBrowser }, async (t) => {
  const page = await startServer(t, 'h2', (app) => {
    app.get('/', (request, reply) => reply.type('text/html').send('<!doctype html><title>another origin</title>'))
  }, { plugin: false })
  const gate = newGate()
  const feeds = await startServer(t, 'h2', corsRoutes(page.origin, gate), { plugin: { limits: { maxStreams: 1 } } })

  const browser = await chromium.launch({
    executablePath: binaryPath('chromium'),
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking'],
    timeout: WAIT_MS
  })
  t.teardown(() => within(browser.close(), 'the browser to close', WAIT_MS))
  const context = await browser.newContext({ ignoreHTTPSErrors: true })
  const tab = await context.newPage()
  tab.setDefaultTimeout(WAIT_MS)
  const pageErrors: string[] = []
  tab.on('pageerror', (error) => pageErrors.push(error.message))
  await tab.goto(`${page.origin}/`)

  // Runs in the page: what a script there can know of a response from the other origin.
  const read = async (url: string): Promise<{ status: number, retryAfter: string | null, body: unknown } | string> => {
    try {
      const response = await fetch(url, { headers: { accept: 'application/json' } })
      return { status: response.status, retryAfter: response.headers.get('retry-after'), body: await response.json() }
    } catch (error) {
      return `fetch failed: ${String(error)}`
    }
  }

  const first = await tab.evaluate(async (url) => await new Promise<string>((resolve) => {
    const events = new EventSource(url)
    ;(window as unknown as { held: EventSource }).held = events
    events.onmessage = (event) => resolve(event.data)
    events.onerror = () => resolve(`error, readyState ${events.readyState}`)
  }), `${feeds.origin}/feed`)
  t.equal(first, 'hello', 'a cross-origin EventSource opens and gets its first event: the one place there is')

  t.same(await tab.evaluate(read, `${feeds.origin}/feed`), {
    status: 503,
    retryAfter: '5',
    body: { statusCode: 503, code: 'FST_SSE_TOO_MANY_STREAMS', error: 'Service Unavailable', message: 'fastify-sse-h2: too many open streams (maxStreams: 1); try again after Retry-After' }
  }, 'past limits, fetch() reads the 503, its Retry-After and its code: no CORS failure')
  t.equal(await tab.evaluate(async (url) => await new Promise<number>((resolve) => {
    const events = new EventSource(url)
    events.onerror = () => {
      resolve(events.readyState)
      events.close()
    }
  }), `${feeds.origin}/feed`), 0, 'a second EventSource is refused, and will come back by itself: readyState CONNECTING')

  const closing = tab.evaluate(read, `${feeds.origin}/slow`)
  await waitForEntered(gate, 1)
  await within(feeds.app.close(), 'app.close()', WAIT_MS)
  const refused = await closing as { status: number, retryAfter: string, body: { code: string } }
  t.equal(refused.status, 503, 'a stream that would open after app.close() began: fetch() reads its 503 too')
  t.ok(Number(refused.retryAfter) >= 1 && Number(refused.retryAfter) <= 10, `with Retry-After ${refused.retryAfter}`)
  t.equal(refused.body.code, 'FST_SSE_SERVER_CLOSING')
  t.same(pageErrors, [], 'no script error')
})

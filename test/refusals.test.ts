/// <reference lib="dom" />
import { test } from 'tap'
import { EventEmitter } from 'node:events'
import { EventSource } from 'eventsource'
import { chromium, type Browser, type Page } from 'playwright-core'
import type { FastifyInstance } from 'fastify'
import { binaryPath, missingService, mustSkip } from './helpers/services'
import { waitUntil, within } from './helpers/wait'
import { KINDS, WAIT_MS, startFeed, survives, type Received } from './helpers/refusal-feed'

// Every refusal a stream can meet (limits full, the store unable to say where a channel starts, an instance that
// closes) is survived by a plain EventSource, with no page code: it is refused, comes back by itself after the
// `retry:` it was given, and resumes with its Last-Event-ID, receiving exactly the events it missed. In Node.js with
// the `eventsource` package (HTTP/1.1) and in Chromium (HTTP/2 with TLS). The feed and the scenario are those of
// fastify-sse-h2/client's tests (test/helpers/refusal-feed.ts).

const skipBrowser = mustSkip(missingService('chromium'))
// The page the browser's EventSource is opened from.
const page = (app: FastifyInstance): void => {
  app.get('/', (request, reply) => reply.type('text/html').send('<!doctype html><title>feed</title>'))
}
for (const kind of KINDS) {
  test(`${kind}: the eventsource package is refused, comes back by itself, and receives exactly what it missed`, async (t) => {
    const feed = await startFeed(t, kind, 'http1')
    const received: Received = []
    const changes = new EventEmitter()
    const source = new EventSource(`${feed.origin}/news`)
    t.teardown(() => source.close())
    source.onmessage = (event) => {
      received.push([event.lastEventId, String(event.data)])
      changes.emit('change')
    }
    source.onopen = () => changes.emit('change')
    await survives(t, kind, feed, {
      opened: async () => {
        await waitUntil(changes, 'change', () => (source.readyState === EventSource.OPEN ? true : undefined), 'the stream to open', WAIT_MS)
      },
      waitFor: async (count) => await waitUntil(changes, 'change', () => (received.length >= count ? [...received] : undefined),
        `${count} events (got ${JSON.stringify(received)})`, WAIT_MS)
    })
  })
}

test('in Chromium, a page with a plain EventSource survives every refusal, with no page code', { skip: skipBrowser }, async (t) => {
  const browser: Browser = await chromium.launch({
    executablePath: binaryPath('chromium'),
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    timeout: WAIT_MS
  })
  t.teardown(() => within(browser.close(), 'the browser to close', WAIT_MS))
  for (const kind of KINDS) {
    await t.test(kind, async (t) => {
      const feed = await startFeed(t, kind, 'h2', page)
      const context = await browser.newContext({ ignoreHTTPSErrors: true })
      t.teardown(() => within(context.close(), 'the browser context to close', WAIT_MS))
      const tab: Page = await context.newPage()
      tab.setDefaultTimeout(WAIT_MS)
      const errors: string[] = []
      tab.on('pageerror', (error) => errors.push(error.message))
      await tab.goto(`${feed.origin}/`)
      // The page's whole code: an EventSource, and what it shows.
      await tab.evaluate(() => {
        const received: Array<[string, string]> = []
        ;(window as unknown as { received: typeof received }).received = received
        // globalThis: the page's own EventSource (this file imports the eventsource package under that name).
        const source = new globalThis.EventSource('/news')
        ;(window as unknown as { source: { readyState: number } }).source = source
        source.onmessage = (event) => received.push([event.lastEventId, event.data])
      })
      await survives(t, kind, feed, {
        opened: async () => {
          await tab.waitForFunction(() => (window as unknown as { source: { readyState: number } }).source.readyState === 1)
        },
        waitFor: async (count) => {
          await tab.waitForFunction((count) => (window as unknown as { received: unknown[] }).received.length >= count, count)
          return await tab.evaluate(() => (window as unknown as { received: Received }).received)
        }
      })
      t.same(errors, [], 'no script error')
    })
  }
})

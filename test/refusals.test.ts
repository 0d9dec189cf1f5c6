/// <reference lib="dom" />
import { test, type Test } from 'tap'
import { EventEmitter } from 'node:events'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { EventSource } from 'eventsource'
import { chromium, type Browser, type Page } from 'playwright-core'
import type { FastifyInstance } from 'fastify'
import { MemoryStore, type SseStore, type StreamRefuseMessage, type EventStream } from '../index'
import { startServer, type Protocol, type TestServer } from './helpers/server'
import { openStream } from './helpers/client'
import { TcpProxy } from './helpers/tcp-proxy'
import { binaryPath, missingService, mustSkip } from './helpers/services'
import { signalled, waitUntil, within } from './helpers/wait'
import { WARN } from './helpers/logs'

// Every refusal a stream can meet (limits full, the store unable to say where a channel starts, an instance that
// closes) is survived by a plain EventSource, with no page code: it is refused, comes back by itself after the
// `retry:` it was given, and resumes with its Last-Event-ID, receiving exactly the events it missed. In Node.js with
// the `eventsource` package (HTTP/1.1) and in Chromium (HTTP/2 with TLS).

const skipBrowser = mustSkip(missingService('chromium'))
const WAIT_MS = 30_000
// How long the client waits before it reconnects once the test drops its stream: room to set up the refusal.
const DROP_RETRY = 300

type Kind = 'limits' | 'unavailable' | 'closing'
const KINDS: Kind[] = ['limits', 'unavailable', 'closing']
const CODES: Record<Kind, string> = {
  limits: 'FST_SSE_TOO_MANY_STREAMS',
  unavailable: 'FST_SSE_CHANNEL_UNAVAILABLE',
  closing: 'FST_SSE_SERVER_CLOSING'
}

/** What a client received: [lastEventId, data] of each message. */
type Received = Array<[string, string]>

interface Client {
  /** Resolves once its stream is open (the server subscribed it). */
  opened: () => Promise<void>
  waitFor: (count: number) => Promise<Received>
}

/** Every refusal the plugin reports (the `stream:refuse` diagnostics channel), with the request's Last-Event-ID. */
class Refusals extends EventEmitter {
  readonly seen: Array<{ code: string, lastEventId: string | undefined }> = []

  constructor (t: { teardown: (fn: () => void) => void }) {
    super()
    const listener = (message: unknown): void => {
      const { code, request } = message as StreamRefuseMessage
      this.seen.push({ code, lastEventId: request.headers['last-event-id'] as string | undefined })
      this.emit('refused')
    }
    subscribe('fastify-sse-h2:stream:refuse', listener)
    t.teardown(() => unsubscribe('fastify-sse-h2:stream:refuse', listener))
  }

  async first (code: string): Promise<{ code: string, lastEventId: string | undefined }> {
    return await waitUntil(this, 'refused', () => this.seen.find((refusal) => refusal.code === code), `a refusal ${code}`, WAIT_MS)
  }
}

/** A store shared by two instances, as Redis is: the first one's close() leaves it to the second. */
function shared (store: MemoryStore): SseStore {
  return {
    append: (channel, event) => store.append(channel, event),
    readAfter: (channel, id) => store.readAfter(channel, id),
    readAfterPosition: (channel, position) => store.readAfterPosition(channel, position),
    listen: (channel, listener) => store.listen(channel, listener),
    unlisten: (channel, listener) => store.unlisten(channel, listener),
    close: () => {}
  }
}

/** A memory store whose reads fail while `away`, as Redis does when it is unreachable. */
class AwayStore extends MemoryStore {
  away = false

  override readAfter (channel: string, lastEventId: string): ReturnType<MemoryStore['readAfter']> {
    if (this.away) throw new Error('the store is away')
    return super.readAfter(channel, lastEventId)
  }
}

interface Feed {
  /** Where the client connects: the server, or the proxy in front of the two instances. */
  origin: string
  ca: string | undefined
  publish: (data: string) => Promise<string>
  /** The server ends the client's stream: it reconnects after DROP_RETRY, with its Last-Event-ID. */
  drop: () => void
  /** Makes the client's next reconnect refused, for the test's kind; resolves once it was. */
  refuseNext: (refusals: Refusals) => Promise<void>
  /** Lets the client's next reconnect through. */
  allow: () => Promise<void>
  logs: TestServer['logs']
  /** Closes the server(s) while the client is still connected. */
  close: () => Promise<void>
}

function feedRoutes (streams: EventStream[], gate?: { armed: boolean, entered: () => void, opened: Promise<void> }) {
  return (app: FastifyInstance): void => {
    app.get('/', (request, reply) => reply.type('text/html').send('<!doctype html><title>feed</title>'))
    app.get('/hold', (request, reply) => { reply.sse() })
    app.get('/news', {
      preHandler: async (request) => {
        if (gate?.armed === true && request.headers['last-event-id'] !== undefined) {
          gate.entered()
          await gate.opened
        }
      }
    }, (request, reply) => {
      const stream = reply.sse(app.sse.channel('news'), { retry: DROP_RETRY })
      streams.push(stream)
      return stream
    })
  }
}

async function startFeed (t: Test, kind: Kind, protocol: Protocol): Promise<Feed> {
  const streams: EventStream[] = []
  const drop = (): void => { (streams.at(-1) as EventStream).close() }
  if (kind === 'closing') {
    const store = new MemoryStore()
    const entered = signalled()
    const opened = signalled()
    const gate = { armed: false, entered: () => entered.resolve(), opened: opened.promise }
    const a = await startServer(t, protocol, async (app) => {
      feedRoutes(streams, gate)(app)
      app.addHook('preClose', () => opened.resolve())
    }, { plugin: { store: shared(store), shutdownRetry: { min: 200, max: 600 } } })
    const b = await startServer(t, protocol, feedRoutes(streams), { plugin: { store, shutdownRetry: { min: 200, max: 600 } } })
    const proxy = await TcpProxy.start(t, Number(new URL(a.origin).port))
    return {
      origin: `${new URL(a.origin).protocol}//127.0.0.1:${proxy.port}`,
      ca: a.ca,
      publish: async (data) => await b.app.sse.channel('news').publish(data),
      drop,
      refuseNext: async (refusals) => {
        gate.armed = true
        drop()
        await within(entered.promise, 'the reconnect in instance A\'s preHandler', WAIT_MS)
        // The load balancer takes A out; A closes with the reconnect still in its preHandler.
        proxy.target = Number(new URL(b.origin).port)
        const closed = a.app.close()
        await refusals.first(CODES.closing)
        await within(closed, 'instance A to close', WAIT_MS)
      },
      allow: async () => {},
      logs: a.logs,
      close: async () => { await b.app.close() }
    }
  }
  const store = new AwayStore()
  const server = await startServer(t, protocol, feedRoutes(streams), {
    plugin: { store, limits: { maxStreams: 1, retryAfter: 0 }, shutdownRetry: { min: 200, max: 600 } }
  })
  let holder: Awaited<ReturnType<typeof openStream>> | undefined
  return {
    origin: server.origin,
    ca: server.ca,
    publish: async (data) => await server.app.sse.channel('news').publish(data),
    drop,
    refuseNext: async (refusals) => {
      if (kind === 'unavailable') {
        store.away = true
        drop()
      } else {
        const ended = new Promise((resolve) => (streams.at(-1) as EventStream).signal.addEventListener('abort', resolve))
        drop()
        await within(ended, 'the stream to end', WAIT_MS)
        // Another client takes the one place before this one is back.
        holder = await openStream(t, server, '/hold')
        t.equal(holder.headers['sse-refused'], undefined, 'another client took the place')
      }
      await refusals.first(CODES[kind])
    },
    allow: async () => {
      store.away = false
      holder?.close()
    },
    logs: server.logs,
    close: async () => { await server.app.close() }
  }
}

/**
 * The scenario, for any client: it receives two events; its reconnect is refused; two events are published while it
 * is away; it comes back by itself and receives exactly those, then a live one.
 */
async function survives (t: Test, kind: Kind, feed: Feed, client: Client): Promise<void> {
  const refusals = new Refusals(t)
  await client.opened()
  const ids = [await feed.publish('one'), await feed.publish('two')]
  t.same(await client.waitFor(2), [[ids[0], 'one'], [ids[1], 'two']], 'the first two events')

  await feed.refuseNext(refusals)
  const refused = await refusals.first(CODES[kind])
  t.equal(refused.lastEventId, ids[1], `its reconnect, with Last-Event-ID, was refused: ${CODES[kind]}`)
  ids.push(await feed.publish('three'), await feed.publish('four'))
  await feed.allow()

  const back = await client.waitFor(4)
  ids.push(await feed.publish('five'))
  const all = await client.waitFor(5)
  t.same(back.slice(0, 4), all.slice(0, 4))
  t.same(all, [[ids[0], 'one'], [ids[1], 'two'], [ids[2], 'three'], [ids[3], 'four'], [ids[4], 'five']],
    'it came back by itself: the events it missed, then the live one, each once, in order')
  t.ok(refusals.seen.every((refusal) => refusal.lastEventId === ids[1]), 'every refused reconnect kept its Last-Event-ID')
  t.same(feed.logs.atLeast(WARN).filter((record) => record.level > WARN), [], 'nothing logged at error level')
  // Before the client closes: an eventsource package closed first left app.close() waiting for keepAliveTimeout (72 s).
  await within(feed.close(), 'the server to close', WAIT_MS)
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
      const feed = await startFeed(t, kind, 'h2')
      const context = await browser.newContext({ ignoreHTTPSErrors: true })
      t.teardown(() => within(context.close(), 'the browser context to close', WAIT_MS))
      const page: Page = await context.newPage()
      page.setDefaultTimeout(WAIT_MS)
      const errors: string[] = []
      page.on('pageerror', (error) => errors.push(error.message))
      await page.goto(`${feed.origin}/`)
      // The page's whole code: an EventSource, and what it shows.
      await page.evaluate(() => {
        const received: Array<[string, string]> = []
        ;(window as unknown as { received: typeof received }).received = received
        // globalThis: the page's own EventSource (this file imports the eventsource package under that name).
        const source = new globalThis.EventSource('/news')
        ;(window as unknown as { source: { readyState: number } }).source = source
        source.onmessage = (event) => received.push([event.lastEventId, event.data])
      })
      await survives(t, kind, feed, {
        opened: async () => {
          await page.waitForFunction(() => (window as unknown as { source: { readyState: number } }).source.readyState === 1)
        },
        waitFor: async (count) => {
          await page.waitForFunction((count) => (window as unknown as { received: unknown[] }).received.length >= count, count)
          return await page.evaluate(() => (window as unknown as { received: Received }).received)
        }
      })
      t.same(errors, [], 'no script error')
    })
  }
})

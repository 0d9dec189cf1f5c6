import type { Test } from 'tap'
import { EventEmitter } from 'node:events'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import type { FastifyInstance } from 'fastify'
import { MemoryStore, type SseStore, type StreamRefuseMessage, type EventStream } from '../../index'
import { startServer, type Protocol, type TestServer } from './server'
import { openStream } from './client'
import { TcpProxy } from './tcp-proxy'
import { signalled, waitUntil, within } from './wait'
import { WARN } from './logs'

// Every refusal a stream can meet (limits full, the store unable to say where a channel starts, an instance that
// closes), set up for any client: it is refused, must come back by itself, and must receive exactly what it missed.
// For any client: a plain EventSource (test/refusals.test.ts), fastify-sse-h2/client in Node.js and Chromium.

export const WAIT_MS = 30_000
// How long the client waits before it reconnects once the test drops its stream: room to set up the refusal.
const DROP_RETRY = 300

export type Kind = 'limits' | 'unavailable' | 'closing'
export const KINDS: Kind[] = ['limits', 'unavailable', 'closing']
export const CODES: Record<Kind, string> = {
  limits: 'FST_SSE_TOO_MANY_STREAMS',
  unavailable: 'FST_SSE_CHANNEL_UNAVAILABLE',
  closing: 'FST_SSE_SERVER_CLOSING'
}

/** What a client received: [lastEventId, data] of each message. */
export type Received = Array<[string, string]>

export interface FeedClient {
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

export interface Feed {
  /** Where the client connects: the server, or the proxy in front of the two instances. */
  origin: string
  ca: string | undefined
  publish: (data: string) => Promise<string>
  /** Makes the client's next reconnect refused, for the feed's kind; resolves once it was. */
  refuseNext: () => Promise<void>
  /** Lets the client's next reconnect through. */
  allow: () => Promise<void>
  /** Every refusal so far, with the Last-Event-ID it was asked with. */
  refusals: Refusals
  logs: TestServer['logs']
  /** Closes the server(s) while the client is still connected. */
  close: () => Promise<void>
}

type Routes = (app: FastifyInstance) => void

function feedRoutes (streams: EventStream[], more: Routes, gate?: { armed: boolean, entered: () => void, opened: Promise<void> }): Routes {
  return (app) => {
    more(app)
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

/** A feed on `/news` whose client's next reconnect `refuseNext()` has refused; `routes` adds the test's own. */
export async function startFeed (t: Test, kind: Kind, protocol: Protocol, routes: Routes = () => {}): Promise<Feed> {
  const streams: EventStream[] = []
  const refusals = new Refusals(t)
  const drop = (): void => { (streams.at(-1) as EventStream).close() }
  if (kind === 'closing') {
    const store = new MemoryStore()
    const entered = signalled()
    const opened = signalled()
    const gate = { armed: false, entered: () => entered.resolve(), opened: opened.promise }
    const a = await startServer(t, protocol, async (app) => {
      feedRoutes(streams, routes, gate)(app)
      app.addHook('preClose', () => opened.resolve())
    }, { plugin: { store: shared(store), shutdownRetry: { min: 200, max: 600 } } })
    const b = await startServer(t, protocol, feedRoutes(streams, routes), { plugin: { store, shutdownRetry: { min: 200, max: 600 } } })
    const proxy = await TcpProxy.start(t, Number(new URL(a.origin).port))
    return {
      origin: `${new URL(a.origin).protocol}//127.0.0.1:${proxy.port}`,
      ca: a.ca,
      publish: async (data) => await b.app.sse.channel('news').publish(data),
      refuseNext: async () => {
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
      refusals,
      logs: a.logs,
      close: async () => { await b.app.close() }
    }
  }
  const store = new AwayStore()
  const server = await startServer(t, protocol, feedRoutes(streams, routes), {
    plugin: { store, limits: { maxStreams: 1, retryAfter: 0 }, shutdownRetry: { min: 200, max: 600 } }
  })
  let holder: Awaited<ReturnType<typeof openStream>> | undefined
  return {
    origin: server.origin,
    ca: server.ca,
    publish: async (data) => await server.app.sse.channel('news').publish(data),
    refuseNext: async () => {
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
    refusals,
    logs: server.logs,
    close: async () => { await server.app.close() }
  }
}

/**
 * The scenario, for any client: it receives two events; its reconnect is refused; two events are published while it
 * is away; it comes back by itself and receives exactly those, then a live one.
 */
export async function survives (t: Test, kind: Kind, feed: Feed, client: FeedClient): Promise<void> {
  await client.opened()
  const ids = [await feed.publish('one'), await feed.publish('two')]
  t.same(await client.waitFor(2), [[ids[0], 'one'], [ids[1], 'two']], 'the first two events')

  await feed.refuseNext()
  const refused = await feed.refusals.first(CODES[kind])
  t.equal(refused.lastEventId, ids[1], `its reconnect, with Last-Event-ID, was refused: ${CODES[kind]}`)
  ids.push(await feed.publish('three'), await feed.publish('four'))
  await feed.allow()

  const back = await client.waitFor(4)
  ids.push(await feed.publish('five'))
  const all = await client.waitFor(5)
  t.same(back.slice(0, 4), all.slice(0, 4))
  t.same(all, [[ids[0], 'one'], [ids[1], 'two'], [ids[2], 'three'], [ids[3], 'four'], [ids[4], 'five']],
    'it came back by itself: the events it missed, then the live one, each once, in order')
  t.ok(feed.refusals.seen.every((refusal) => refusal.lastEventId === ids[1]), 'every refused reconnect kept its Last-Event-ID')
  t.same(feed.logs.atLeast(WARN).filter((record) => record.level > WARN), [], 'nothing logged at error level')
  // Before the client closes: a client closed first can leave app.close() waiting for keepAliveTimeout (72 s).
  await within(feed.close(), 'the server to close', WAIT_MS)
}

import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { MemoryStore } from '../lib/stores/memory-store'
import type { Replay, SseStore } from '../lib/stores/store'
import type { EventStream } from '../index'
import { PROTOCOLS, startServer } from './helpers/server'
import { openStream, type SseClient } from './helpers/client'
import { laterStore, storeOver } from './helpers/store-over'
import { signalled, within } from './helpers/wait'
import { WARN } from './helpers/logs'

// A store that passes the contract is indistinguishable to a subscriber: what a route sends of its own while a
// replay (or where a channel stands) is being read is written after it, whether the store answers at once (memory) or
// on a later turn (a store over a network, Redis).

const STORES: Array<[string, () => SseStore]> = [
  ['the memory store', () => new MemoryStore()],
  ['a store that answers on a later turn', () => laterStore(new MemoryStore())]
]

function routes (app: FastifyInstance): void {
  const [a, b] = [app.sse.channel('a'), app.sse.channel('b')]
  // A welcome right after reply.sse(), as a route that greets each client does.
  app.get('/one', (request, reply) => {
    const stream: EventStream = reply.sse(a)
    stream.send({ event: 'welcome', data: 'hello' })
    return stream
  })
  app.get('/list', (request, reply) => {
    const stream: EventStream = reply.sse([a, b])
    stream.send({ event: 'welcome', data: 'hello' })
    return stream
  })
}

/** Twenty events of its own, waiting for drained() whenever send() says to. */
async function sendAll (stream: EventStream): Promise<void> {
  for (let i = 0; i < 20; i++) {
    if (!stream.send({ data: `own:${i}:${'x'.repeat(1000)}` })) await stream.drained()
  }
}

function data (client: SseClient): string[] {
  return client.events.map((event) => event.data)
}

for (const [storeName, makeStore] of STORES) {
  for (const protocol of PROTOCOLS) {
    test(`${storeName}, ${protocol}: the route's welcome comes after the replay, then the live events`, async (t) => {
      const server = await startServer(t, protocol, routes, { plugin: { store: makeStore() } })
      const { app } = server
      const ids = []
      for (let i = 0; i < 3; i++) ids.push(await app.sse.channel('a').publish({ data: `a:${i}` }))
      const fresh = await openStream(t, server, '/one')
      const back = await openStream(t, server, '/one', { headers: { 'last-event-id': ids[0] } })
      await app.sse.channel('a').publish({ data: 'a:live' })
      await back.waitForEvents(4)
      t.same(data(back), ['a:1', 'a:2', 'hello', 'a:live'], 'resumed: what it missed, the welcome, then live')
      await fresh.waitForEvents(2)
      t.same(data(fresh), ['hello', 'a:live'], 'fresh: the welcome, then live')

      const first = await openStream(t, server, '/list')
      await app.sse.channel('b').publish({ data: 'b:0' })
      await first.waitForEvents(2)
      first.close()
      await app.sse.channel('a').publish({ data: 'a:away' })
      await app.sse.channel('b').publish({ data: 'b:away' })
      const list = await openStream(t, server, '/list', { headers: { 'last-event-id': first.events[1].id as string } })
      await list.waitForEvents(3)
      t.same(data(list), ['a:away', 'b:away', 'hello'], 'a list: every channel\'s replay, then the welcome')
    })
  }
}

test('own sends held behind a replay: false says to wait; a route that sends on regardless is held, not dropped', async (t) => {
  const inner = new MemoryStore()
  const release = signalled()
  // A replay that takes as long as the test says.
  const store = storeOver(inner, {
    readAfter: async (channel, lastEventId): Promise<Replay> => {
      await release.promise
      return inner.readAfter(channel, lastEventId)
    }
  })
  const politeDone = signalled()
  const pushyDone = signalled()
  const server = await startServer(t, 'h2c', (app) => {
    const news = app.sse.channel('news')
    // Waits for drained() whenever send() says so.
    app.get('/polite', (request, reply) => {
      const stream: EventStream = reply.sse(news)
      sendAll(stream).then(() => politeDone.resolve(), () => {})
      return stream
    })
    // Sends on, an event a millisecond, whatever send() says: what it holds waits for the store, not for the client.
    app.get('/pushy', (request, reply) => {
      const stream: EventStream = reply.sse(news)
      let i = 0
      const timer = setInterval(() => {
        stream.send({ data: `own:${i}:${'x'.repeat(1000)}` })
        if (++i === 20) {
          clearInterval(timer)
          pushyDone.resolve()
        }
      }, 1)
      return stream
    })
  }, { plugin: { store, maxBufferedBytes: 4096 } })
  const { app } = server
  const id = await app.sse.channel('news').publish({ data: 'news:0' })
  await app.sse.channel('news').publish({ data: 'news:1' })
  const polite = openStream(t, server, '/polite', { headers: { 'last-event-id': id } })
  const pushy = openStream(t, server, '/pushy', { headers: { 'last-event-id': id } })
  await within(pushyDone.promise, 'the pushy route to send 20 events, over 20 ms at least')
  release.resolve()
  await within(politeDone.promise, 'the polite route to send all')
  const expected = ['news:1', ...Array.from({ length: 20 }, (_, i) => `own:${i}`)]
  for (const client of [await polite, await pushy]) {
    await client.waitForEvents(21)
    t.same(data(client).map((text) => text.split(':').slice(0, 2).join(':')), expected, 'the replay, then its own events in order')
  }
  t.same(server.logs.atLeast(WARN), [], 'no client dropped')
})

test('a pulled source whose stream takes a channel: its events wait behind where the channel starts, then go on', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/pulled', (request, reply) => {
      const stream: EventStream = reply.sse(async function * () {
        yield { data: 'first' }
        // A store whose head() answers on a later turn: the stream holds what it writes until then.
        stream.subscribe(app.sse.channel('a'))
        yield { data: 'held' }
        yield { data: 'after' }
      })
      return stream
    })
  }, { plugin: { store: laterStore(new MemoryStore()) } })
  const client = await openStream(t, server, '/pulled')
  await client.waitForEnd()
  t.same(data(client), ['first', 'held', 'after'])
})

import { test } from 'tap'
import type { FastifyBaseLogger } from 'fastify'
import { MemoryStore, type EventToStore, type Replay, type SseStore, type StoredEvent, type StoredEventListener } from '../index'
import { startServer } from './helpers/server'
import { openStream } from './helpers/client'

/**
 * A store of one's own, as README's "Stores" describes it: every method answers with a promise (as one over a
 * network would), and attach() takes the app's logger. It keeps its events in a MemoryStore.
 */
class AsyncStore implements SseStore {
  readonly inner = new MemoryStore()
  log: FastifyBaseLogger | undefined
  closed = false

  attach (log: FastifyBaseLogger): void {
    this.log = log
    log.info('custom store: attached')
  }

  async append (channel: string, event: EventToStore): Promise<StoredEvent> {
    await Promise.resolve()
    return this.inner.append(channel, event)
  }

  async readAfter (channel: string, lastEventId: string): Promise<Replay> {
    await Promise.resolve()
    return this.inner.readAfter(channel, lastEventId)
  }

  listen (channel: string, listener: StoredEventListener): void {
    this.inner.listen(channel, listener)
  }

  unlisten (channel: string, listener: StoredEventListener): void {
    this.inner.unlisten(channel, listener)
  }

  async close (): Promise<void> {
    this.closed = true
    this.inner.close()
  }
}

test('a store of your own: attach() is given the app\'s logger, promises are awaited, close() comes with app.close()',
  async (t) => {
    const store = new AsyncStore()
    const server = await startServer(t, 'h2c', (app) => {
      app.get('/news', (request, reply) => reply.sse(app.sse.channel('news')))
    }, { plugin: { store } })
    t.ok(server.logs.withMessage('custom store: attached').length === 1, 'attach() was called with the app\'s logger')
    t.equal(server.app.sse.store, store)

    const first = await openStream(t, server, '/news')
    const ids = [await server.app.sse.channel('news').publish('one'), await server.app.sse.channel('news').publish('two')]
    await first.waitForEvents(2)
    t.same(first.events.map((event) => [event.id, event.data]), [[ids[0], 'one'], [ids[1], 'two']])

    const back = await openStream(t, server, '/news', { headers: { 'last-event-id': ids[0] } })
    await back.waitForEvents(1)
    t.same(back.events.map((event) => event.data), ['two'], 'a replay read with a promise')

    await server.app.close()
    t.ok(store.closed, 'closed with the app')
  })

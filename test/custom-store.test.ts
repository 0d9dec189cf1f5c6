import { test } from 'tap'
import type { FastifyBaseLogger } from 'fastify'
import { MemoryStore, type EventToStore, type Replay, type SseStore, type StoredEvent, type StoredEventListener } from '../index'
import { startServer } from './helpers/server'
import { openStream } from './helpers/client'
import { signalled, within } from './helpers/wait'

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

/** A store whose head() answers when the test says, as one over a network may answer late. */
class LateHeadStore extends AsyncStore {
  asked = signalled<{ resolve: (position: string | undefined) => void, reject: (reason: unknown) => void }>()

  async head (): Promise<string | undefined> {
    return await new Promise((resolve, reject) => this.asked.resolve({ resolve, reject }))
  }
}

test('a store whose head() answers late: the stream is answered then, refused with a coded 503 if it cannot say, or if the server began closing meanwhile',
  async (t) => {
    const store = new LateHeadStore()
    const whenClosing: { answer?: () => void } = {}
    const server = await startServer(t, 'h2c', (app) => {
      app.get('/news', (request, reply) => reply.sse(app.sse.channel('news')))
      // After the plugin's own: the server is closing now.
      app.addHook('preClose', async () => whenClosing.answer?.())
    }, { plugin: { store } })

    const answered = openStream(t, server, '/news')
    const first = await within(store.asked.promise, 'head() to be asked')
    store.asked = signalled()
    first.resolve(undefined)
    const open = await answered
    t.equal(open.status, 200)
    await server.app.sse.channel('news').publish('after head()')
    await open.waitForEvents(1)
    t.same(open.events.map((event) => event.data), ['after head()'])

    const unanswered = openStream(t, server, '/news', { headers: { accept: '*/*' } })
    const second = await within(store.asked.promise, 'head() to be asked again')
    store.asked = signalled()
    // Not an Error: what a store rejects with is described in the message.
    second.reject('no idea')
    const refused = await unanswered
    t.equal(refused.status, 503)
    t.ok(Number(refused.headers['retry-after']) >= 1, 'with a Retry-After')
    t.match(server.logs.records, [])

    const closing = openStream(t, server, '/news', { headers: { accept: '*/*' } })
    const third = await within(store.asked.promise, 'head() for a stream during close')
    whenClosing.answer = () => third.resolve(undefined)
    const closed = server.app.close()
    t.equal((await closing).status, 503, 'the server began closing while head() was on its way')
    await within(closed, 'app.close()')
  })

import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { startServer } from './helpers/server'
import { openStream } from './helpers/client'
import { signalled, within } from './helpers/wait'
import { ERROR, WARN } from './helpers/logs'
import sse, { MemoryStore, type ControlMember, type SseStore, type SseStoreControl } from '../index'

// Steering's edges, on one instance: stores whose control is missing, slow, failing; actions an instance cannot apply.

/** A memory store's channels, with the control given (or none). */
function storeWith (control: SseStoreControl | undefined): SseStore {
  const inner = new MemoryStore()
  return {
    append: (channel, event) => inner.append(channel, event),
    readAfter: (channel, lastEventId) => inner.readAfter(channel, lastEventId),
    head: (channel) => inner.head(channel),
    listen: (channel, listener) => inner.listen(channel, listener),
    unlisten: (channel, listener) => inner.unlisten(channel, listener),
    close: () => inner.close(),
    ...(control === undefined ? {} : { control })
  }
}

function taggedRoute (app: FastifyInstance): void {
  app.get('/tagged', (request, reply) => reply.sse(undefined, { tags: ['t'] }))
  app.get('/news', (request, reply) => reply.sse(app.sse.channel('news')))
}

test('a store without control steers the streams of its own process', async (t) => {
  const server = await startServer(t, 'h2c', taggedRoute, { plugin: { store: storeWith(undefined) } })
  const clients = [await openStream(t, server, '/tagged'), await openStream(t, server, '/tagged'), await openStream(t, server, '/news')]
  const [one, two] = await Promise.all([server.app.sse.tagged('t').count(), server.app.sse.tagged('t').count()])
  t.same([one, two], [2, 2], 'counts asked together share one answer')
  t.same(await server.app.sse.channel('news').presence(), { subscribers: 1 })
  t.same(await server.app.sse.tagged('t').close(), { streams: 2, unanswered: [] })
  await Promise.all(clients.slice(0, 2).map(async (client) => await client.waitForEnd()))
})

test('a control that never lets this instance join: its tagged stream opens after 2 s, and actions fail with a code', async (t) => {
  const control: SseStoreControl = {
    leaseMs: 0,
    join: async () => await new Promise<ControlMember>(() => {}),
    report: () => () => {},
    sum: async () => { throw new Error('Redis is away') }
  }
  const server = await startServer(t, 'h2c', taggedRoute, { plugin: { store: storeWith(control) } })
  const started = Date.now()
  const [client, count] = await Promise.all([
    openStream(t, server, '/tagged'),
    server.app.sse.tagged('t').count().then(() => undefined, (error: Error) => error)
  ])
  t.equal(client.status, 200, 'the stream opens all the same')
  t.ok(Date.now() - started >= 1900, 'after the bound')
  t.match(count, { code: 'FST_SSE_CONTROL_UNAVAILABLE', message: /could not join the others within 2000 ms/ })
  t.ok(server.logs.records.some((record) => /could join the others/.test(record.msg ?? '')), 'said at debug level')
  t.equal(server.logs.atLeast(WARN).length, 0, 'no warning: the store says when it is away')
  await t.rejects(server.app.sse.channel('news').presence(), { code: 'FST_SSE_CONTROL_UNAVAILABLE', message: /Redis is away/ })
})

test('a join that fails is said, and tried again at the next action; one that ends after the app closed leaves', async (t) => {
  let joins = 0
  const left = signalled()
  const late = signalled<ControlMember>()
  const inner = new MemoryStore().control
  const control: SseStoreControl = {
    leaseMs: 0,
    join: async (handler) => {
      joins++
      if (joins === 1) throw new Error('not yet')
      if (joins === 2) return await inner.join(handler)
      return await late.promise
    },
    report: (read) => inner.report(read),
    sum: async (name) => await inner.sum(name)
  }
  const server = await startServer(t, 'h2c', taggedRoute, { plugin: { store: storeWith(control) } })
  await t.rejects(server.app.sse.tagged('t').count(), { code: 'FST_SSE_CONTROL_UNAVAILABLE', message: /not yet/ })
  t.match(server.logs.atLeast(ERROR), [{ msg: /could not join the others/, err: { message: 'not yet' } }], 'said')
  t.equal(await server.app.sse.tagged('t').count(), 0, 'joined at the next action')

  // Another app over a control that answers its join only once the app has closed: the member leaves at once.
  const other = await startServer(t, 'h2c', taggedRoute, { plugin: { store: storeWith(control) } })
  const counting = other.app.sse.tagged('t').count().catch(() => {})
  await other.app.close()
  late.resolve({ id: 'late', send: async () => ({ answers: new Map(), unanswered: [] }), leave: async () => left.resolve() })
  await within(left.promise, 'the member that joined after the app closed to leave')
  await counting
})

test('an action an instance cannot apply is said there, and the others apply it', async (t) => {
  const store = new MemoryStore()
  const Price = { type: 'object', properties: { p: { type: 'number' } } } as const
  const Other = { type: 'object', properties: { q: { type: 'number' } } } as const
  let one!: FastifyInstance
  let two!: FastifyInstance
  const server = await startServer(t, 'h2c', async (app) => {
    await app.register(async (scope) => {
      await scope.register(sse, { store })
      scope.get('/one', (request, reply) => reply.sse(undefined, { tags: ['t'] }))
      one = scope
    })
    await app.register(async (scope) => {
      await scope.register(sse, { store })
      scope.get('/two', (request, reply) => reply.sse(undefined, { tags: ['t'] }))
      scope.get('/typed', {
        schema: { response: { 200: { content: { 'text/event-stream': { schema: Other } } } } }
      }, (request, reply) => reply.sse(undefined, { tags: ['t'] }))
      two = scope
    })
  }, { plugin: false })
  const [onOne, onTwo, typed] = [await openStream(t, server, '/one'), await openStream(t, server, '/two'), await openStream(t, server, '/typed')]
  t.same([onOne.status, onTwo.status, typed.status], [200, 200, 200])

  // A filter registered on one registration only: the other does not know its name.
  const big = one.sse.filter('big', (event) => (event.data as { p: number }).p > 1)
  const prices = one.sse.channel('prices', { schema: Price })
  t.same(await one.sse.tagged('t').subscribe(prices, { filter: big }), { streams: 1, unanswered: [] }, 'applied where the filter is known')
  t.match(server.logs.atLeast(ERROR), [{ msg: /subscription by tag could not be applied/, err: { message: /no filter is registered as "big"/ } }])

  // Without the filter: the other makes the channel with its schema, and applies it to the streams that can carry it.
  t.same(await one.sse.tagged('t').subscribe(prices), { streams: 2, unanswered: [] }, 'one stream each, not the typed route\'s')
  t.match(server.logs.atLeast(WARN).filter((record) => record.level === WARN),
    [{ msg: /could not be subscribed to a channel/, err: { code: 'FST_SSE_SCHEMA_MISMATCH' } }], 'the typed route\'s stream keeps what it had')
  t.same(await one.sse.tagged('t').subscribe(prices), { streams: 2, unanswered: [] }, 'the same schema, as JSON: the channel made for the first')
  await prices.publish({ data: { p: 2 } })
  await Promise.all([onOne.waitForEvents(1), onTwo.waitForEvents(1)])
  // A channel of no schema that the other has not opened: made there too.
  t.same(await one.sse.tagged('t').subscribe(one.sse.channel('plain')), { streams: 2, unanswered: [] }, 'made without a schema')
  await one.sse.channel('plain').publish('plain')
  await Promise.all([onOne.waitForEvents(2), onTwo.waitForEvents(2)])

  // A channel of the same name with another schema on the other registration: said there; applied where it is the same.
  two.sse.channel('mixed', { schema: Other })
  t.same(await one.sse.tagged('t').subscribe(one.sse.channel('mixed', { schema: Price })), { streams: 1, unanswered: [] })
  t.match(server.logs.atLeast(ERROR).at(-1), { err: { code: 'FST_SSE_INVALID_OPTION', message: /schema/ } })

  // Unsubscribed from a channel only one of them has.
  t.same(await one.sse.tagged('t').unsubscribe(one.sse.channel('only-here')), { streams: 0, unanswered: [] })

  // An action of a later version: nothing is done, and each answers.
  const newer = await store.control.join(() => ({}))
  t.teardown(async () => await newer.leave())
  const result = await newer.send({ type: 'a later action', tag: 't' }, 1000)
  t.same(result.unanswered, [])
  t.same([...result.answers.values()], [{}, {}, {}])
})

test('a lifetime keeps the earlier of maxStreamAge and expiresAt', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/aged', { config: { sse: { maxStreamAge: 300 } } }, (request, reply) => reply.sse(undefined, { expiresAt: Date.now() + 60_000 }))
  }, { plugin: { heartbeatInterval: 100, shutdownRetry: { min: 10, max: 10 } } })
  const client = await openStream(t, server, '/aged')
  await client.waitForEnd(5000)
  t.equal(server.app.sse.stats().streams.closed.FST_SSE_MAX_AGE, 1, 'closed by maxStreamAge, which comes first')
})

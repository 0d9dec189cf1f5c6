import { test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { isHttp2, PROTOCOLS, startServer } from './helpers/server'
import { connectSession, openStream } from './helpers/client'
import { startFrozenClient } from './helpers/frozen-client'
import { signalled, within } from './helpers/wait'
import sse, { MemoryStore, type EventStream, type SseStats, type SseStore } from '../index'
import { injectSSE } from '../testing'

const aborted = async (stream: EventStream, what: string): Promise<unknown> =>
  await within(new Promise((resolve) => {
    if (stream.signal.aborted) resolve(undefined)
    else stream.signal.addEventListener('abort', resolve)
  }), what)

const nextTurn = async (): Promise<void> => await new Promise((resolve) => setImmediate(resolve))

/** The counts of a stats object that are not 0, flattened: `streams.closed.FST_SSE_CLIENT_CLOSED: 1`. */
function nonZero (stats: SseStats): Record<string, number> {
  const counts: Record<string, number> = {}
  const walk = (value: unknown, path: string): void => {
    if (typeof value === 'number') {
      if (value !== 0) counts[path] = value
      return
    }
    for (const [key, inner] of Object.entries(value as object)) walk(inner, path === '' ? key : `${path}.${key}`)
  }
  walk(stats, '')
  return counts
}

for (const protocol of PROTOCOLS) {
  test(`${protocol}: streams opened, open now, and closed by reason, counted under their protocol`, async (t) => {
    const handles = new Map<string, EventStream>()
    const server = await startServer(t, protocol, (app) => {
      app.get('/push/:name', (request, reply) => { handles.set((request.params as { name: string }).name, reply.sse()) })
      app.get('/finite', (request, reply) => reply.sse(['one', 'two']))
    })
    const { app } = server
    const kind = isHttp2(protocol) ? 'http2' : 'http1'
    const leaving = await openStream(t, server, '/push/leaving')
    await openStream(t, server, '/push/closed')
    await openStream(t, server, '/push/open')
    const finite = await openStream(t, server, '/finite')
    await finite.waitForEnd()
    leaving.close()
    await aborted(handles.get('leaving') as EventStream, 'the server to see the client leave')
    ;(handles.get('closed') as EventStream).close()
    t.same(nonZero(app.sse.stats()), {
      'streams.open': 1,
      'streams.opened': 4,
      'streams.closed.FST_SSE_CLIENT_CLOSED': 1,
      'streams.closed.FST_SSE_STREAM_ENDED': 2,
      [`streams.byProtocol.${kind}.open`]: 1,
      [`streams.byProtocol.${kind}.opened`]: 4,
      'events.sent': 2,
      // Over HTTP/1.1 each push stream, quiet a turn after it opened, wrote a comment (':\n\n') with its headers.
      'bytes.sent': Buffer.byteLength(finite.text) + (isHttp2(protocol) ? 0 : 3 * 3)
    })
    await app.close()
    t.match(app.sse.stats().streams, { open: 0, opened: 4, closed: { FST_SSE_SERVER_CLOSING: 1 } }, 'app.close() ended the last')
  })
}

test('events and bytes sent: what clients received, byte for byte, replays and channel fan-out included', async (t) => {
  const handles: EventStream[] = []
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/push', (request, reply) => { handles.push(reply.sse()) })
    app.get('/news', (request, reply) => reply.sse(app.sse.channel('news')))
  }, { plugin: { retry: 1000, heartbeatInterval: 0 } })
  const { app } = server
  const push = await openStream(t, server, '/push')
  const [stream] = handles
  stream.send({ id: 'e1', event: 'grëeting', data: 'héllo ✓' })
  stream.comment('not an event')
  stream.send('plain')
  await push.waitForEvents(2)
  const news = app.sse.channel('news')
  const first = await news.publish({ data: 'first' })
  const subscribers = await Promise.all([openStream(t, server, '/news'), openStream(t, server, '/news')])
  await news.publish({ data: { n: 2 } })
  const resumed = await openStream(t, server, '/news', { headers: { 'last-event-id': first } })
  await resumed.waitForEvents(1)
  await news.publish({ data: 'third' })
  await Promise.all([...subscribers.map(async (client) => await client.waitForEvents(2)), resumed.waitForEvents(2)])
  stream.close()
  await push.waitForEnd()
  const clients = [push, ...subscribers, resumed]
  const stats = app.sse.stats()
  t.equal(stats.events.sent, 2 + 2 * 2 + 2, 'each event written to each stream counts once; comments and retry: do not')
  t.equal(stats.bytes.sent, clients.reduce((sum, client) => sum + Buffer.byteLength(client.text), 0),
    'bytes as UTF-8 on the wire: what the clients received, retry: and comments included')
  t.same(stats.replays, { resumed: 1, missed: 0, failed: 0 })
})

test('channels open now and their subscriptions; a closed channel counts no more', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sse)
  app.get('/:channel', (request, reply) => reply.sse(app.sse.channel((request.params as { channel: string }).channel)))
  t.same(app.sse.stats().channels, { count: 0, subscribers: 0 })
  const streams = await Promise.all(['/a', '/a', '/b'].map(async (url) => await injectSSE(app, { url })))
  app.sse.channel('quiet')
  t.same(app.sse.stats().channels, { count: 3, subscribers: 3 })
  await app.sse.channel('b').close()
  t.same(app.sse.stats().channels, { count: 2, subscribers: 2 })
  await streams[0].close()
  t.same(app.sse.stats().channels, { count: 2, subscribers: 1 })
  await Promise.all(streams.map(async (stream) => await stream.close()))
})

test('replays by outcome: resumed, missed (the id not retained), failed (the store failed)', async (t) => {
  const memory = new MemoryStore({ historySize: 2 })
  let failing = false
  const store: SseStore = {
    append: (channel, event) => memory.append(channel, event),
    readAfter: async (channel, lastEventId) => {
      if (failing) throw new Error('the store is away')
      return memory.readAfter(channel, lastEventId)
    },
    listen: (channel, listener) => memory.listen(channel, listener),
    unlisten: (channel, listener) => memory.unlisten(channel, listener),
    close: () => memory.close()
  }
  const app = Fastify({ logger: false })
  t.teardown(() => app.close())
  await app.register(sse, { store })
  app.get('/news', (request, reply) => reply.sse(app.sse.channel('news')))
  await app.ready()
  const news = app.sse.channel('news')
  const ids = [await news.publish({ data: 'one' }), await news.publish({ data: 'two' }), await news.publish({ data: 'three' })]
  const resumed = await injectSSE(app, { url: '/news', lastEventId: ids[1] })
  const missed = await injectSSE(app, { url: '/news', lastEventId: ids[0] })
  failing = true
  const failed = await injectSSE(app, { url: '/news', lastEventId: ids[1] })
  t.same(await resumed.next(), { done: false, value: { id: ids[2], data: 'three' } })
  t.match(await missed.next(), { value: { event: 'missed' } })
  t.same(await failed.next(), { done: true, value: undefined }, 'a failed replay closes its stream')
  t.same(app.sse.stats().replays, { resumed: 1, missed: 1, failed: 1 })
  t.equal(app.sse.stats().events.sent, 1 + 1 + 2, 'resumed: three; missed: the missed event, two, three')
  await Promise.all([resumed.close(), missed.close()])
})

test('refusals by code: past limits, a reply already sent, and while the server closes', async (t) => {
  const gate = signalled()
  const entered = signalled()
  const late = signalled<EventStream>()
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/push', (request, reply) => { reply.sse() })
    app.get('/sent', (request, reply) => {
      reply.send('a plain answer')
      setImmediate(() => late.resolve(reply.sse()))
    })
    app.get('/gated', { preHandler: async () => { entered.resolve(); await gate.promise } }, (request, reply) => { reply.sse() })
    app.addHook('preClose', () => gate.resolve())
  }, { plugin: { limits: { maxStreams: 1 } } })
  const { app } = server
  await openStream(t, server, '/push')
  // Counted in either form: as an event stream that comes back (EventSource's Accept), or as a 503.
  t.equal((await openStream(t, server, '/push')).headers['sse-refused'], 'FST_SSE_TOO_MANY_STREAMS')
  await openStream(t, server, '/sent')
  await within(late.promise, 'reply.sse() after the reply was sent')
  const gated = openStream(t, server, '/gated', { headers: { accept: '*/*' } })
  await within(entered.promise, 'the gated request in its preHandler')
  await app.close()
  t.equal((await gated).status, 503)
  t.same(app.sse.stats().streams.refused, {
    FST_SSE_TOO_MANY_STREAMS: 1, FST_SSE_SERVER_CLOSING: 1, FST_SSE_CHANNEL_UNAVAILABLE: 0, FST_SSE_ALREADY_SENT: 1
  })
  t.equal(app.sse.stats().streams.opened, 1, 'a refused stream never opened')
})

test('h2c: a slow client and a frozen one are counted as closed for that reason', async (t) => {
  const handles: EventStream[] = []
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/push', (request, reply) => { handles.push(reply.sse()) })
  }, { plugin: { maxBufferedBytes: 16 * 1024, writeTimeout: 300, heartbeatInterval: 100 }, logLevel: 'error' })
  const session = await connectSession(t, server)
  const slow = await openStream(t, server, '/push', { session })
  slow.pause()
  const [slowStream] = handles
  const payload = { data: 'x'.repeat(1000) }
  for (let i = 0; i < 10_000 && !slowStream.closed; i++) {
    slowStream.send(payload)
    await nextTurn()
  }
  await aborted(slowStream, 'the slow client to be dropped')
  const frozen = await startFrozenClient(t, server, '/push')
  frozen.freeze()
  const frozenStream = handles[1]
  for (let i = 0; i < 20_000 && frozenStream.bufferedBytes === 0; i++) {
    frozenStream.send({ data: 'f'.repeat(2000) })
    await nextTurn()
  }
  await aborted(frozenStream, 'the frozen client to be dropped')
  t.match(server.app.sse.stats().streams, {
    open: 0, opened: 2, closed: { FST_SSE_SLOW_CLIENT: 1, FST_SSE_FROZEN_CLIENT: 1 }
  })
})

test('stats() is a new plain object each time; each registration of the plugin counts its own streams', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  const instances: FastifyInstance[] = []
  for (const prefix of ['/one', '/two']) {
    await app.register(async (scope) => {
      await scope.register(sse)
      scope.get('/ticks', (request, reply) => reply.sse(['tick']))
      instances.push(scope)
    }, { prefix })
  }
  for await (const event of await injectSSE(app, { url: '/one/ticks' })) t.equal(event.data, 'tick')
  const [one, two] = instances.map((scope) => scope.sse.stats())
  t.match(one, { streams: { opened: 1 }, events: { sent: 1 } })
  t.match(two, { streams: { opened: 0 }, events: { sent: 0 } })
  one.streams.opened = 100
  one.streams.closed.FST_SSE_STREAM_ENDED = 100
  t.match(instances[0].sse.stats().streams, { opened: 1, closed: { FST_SSE_STREAM_ENDED: 1 } }, 'changing one changes nothing')
  t.equal(Object.getPrototypeOf(one), Object.prototype, 'a plain object')
  t.same(JSON.parse(JSON.stringify(one)), one, 'made of JSON values only')
})

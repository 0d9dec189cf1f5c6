import { test } from 'tap'
import http2 from 'node:http2'
import { once } from 'node:events'
import type { FastifyInstance } from 'fastify'
import { startServer, type Protocol, type TestServer } from './helpers/server'
import { connectSession, openStream, type SseClient } from './helpers/client'
import { signalled, within } from './helpers/wait'
import { WARN } from './helpers/logs'
import Fastify from 'fastify'
import sse, { MemoryStore, MISSED_EVENT, errors, type EventStream, type Replay, type SseStore } from '../index'

const PROTOCOLS_UNDER_TEST: Protocol[] = ['h2c', 'http1']

function datas (client: SseClient): string[] {
  return client.events.filter((event) => event.event !== MISSED_EVENT).map((event) => event.data)
}

/** A memory store whose replay is the test's: late, or failing, as a remote store's can be. */
function storeWith (readAfter: (inner: MemoryStore, channel: string, lastEventId: string) => Promise<Replay>): SseStore {
  const inner = new MemoryStore()
  return {
    append: (channel, event) => inner.append(channel, event),
    readAfter: (channel, lastEventId) => readAfter(inner, channel, lastEventId),
    listen: (channel, listener) => inner.listen(channel, listener),
    unlisten: (channel, listener) => inner.unlisten(channel, listener),
    close: () => inner.close()
  }
}

function newsRoute (app: FastifyInstance): void {
  app.get('/news', (request, reply) => reply.sse(app.sse.channel('news')))
}

async function subscribers (t: Parameters<typeof startServer>[0], server: TestServer, count: number,
  headers: Record<string, string> = {}): Promise<SseClient[]> {
  const sessions = server.protocol === 'h2c' ? await Promise.all([1, 2, 3, 4].map(() => connectSession(t, server))) : []
  return await Promise.all(Array.from({ length: count }, (_, i) =>
    openStream(t, server, '/news', { headers, session: sessions[i % 4] })))
}

test('app.sse.channel(name) is one channel per name; publish() resolves to increasing ids', async (t) => {
  const server = await startServer(t, 'h2c', () => {})
  const news = server.app.sse.channel('news')
  t.equal(server.app.sse.channel('news'), news)
  t.not(server.app.sse.channel('sports'), news)
  t.equal(news.name, 'news')
  t.equal(news.subscribers, 0)
  const first = await news.publish({ data: 'a' })
  const second = await news.publish('b')
  t.match(first, /^\d+$/)
  t.ok(BigInt(second) > BigInt(first), `${second} comes after ${first}`)
  t.equal(await news.publish({ id: 'mine-1', data: 'c' }), 'mine-1', 'an id the publisher gives is kept')
  await t.rejects(news.publish({ id: 'a\nb', data: 'x' }), { code: 'FST_SSE_INVALID_ID' })
  await t.rejects(news.publish(42 as never), { code: 'FST_SSE_INVALID_EVENT' })
  t.throws(() => server.app.sse.channel(''), { code: 'FST_SSE_INVALID_CHANNEL' })
  t.ok(server.app.sse.store instanceof MemoryStore, 'the default store')
})

for (const protocol of PROTOCOLS_UNDER_TEST) {
  test(`${protocol}: every subscriber gets every event once, in order, with the id publish() gave`, async (t) => {
    const server = await startServer(t, protocol, newsRoute, { logLevel: 'warn' })
    const count = protocol === 'h2c' ? 400 : 100
    const clients = await subscribers(t, server, count)
    const news = server.app.sse.channel('news')
    t.equal(news.subscribers, count)
    const ids: string[] = []
    for (let i = 0; i < 50; i++) ids.push(await news.publish({ event: 'n', data: String(i) }))
    // A burst published in one tick goes out in one write per subscriber.
    ids.push(...await Promise.all(Array.from({ length: 50 }, (_, i) => news.publish({ event: 'n', data: String(50 + i) }))))
    await Promise.all(clients.map((client) => client.waitForEvents(100)))
    const expected = Array.from({ length: 100 }, (_, i) => String(i)).join()
    t.ok(clients.every((client) => client.events.length === 100 && datas(client).join() === expected), 'all, in order, once')
    t.ok(clients.every((client) => client.events.map((event) => event.id).join() === ids.join()), 'with their ids')
    for (const client of clients) client.close()
    await within(new Promise<void>((resolve) => {
      const check = (): void => { if (news.subscribers === 0) resolve(); else setImmediate(check) }
      check()
    }), 'the channel to forget the subscribers that left')
    t.same(server.logs.atLeast(WARN), [])
  })

  test(`${protocol}: a subscriber that comes back with Last-Event-ID gets what it missed, then live events`, async (t) => {
    const server = await startServer(t, protocol, newsRoute)
    const news = server.app.sse.channel('news')
    const [first] = await subscribers(t, server, 1)
    const ids = [await news.publish('0'), await news.publish('1')]
    await first.waitForEvents(2)
    first.close()
    ids.push(await news.publish('2'), await news.publish('3'))
    const back = await openStream(t, server, '/news', { headers: { 'last-event-id': ids[1] } })
    await back.waitForEvents(2)
    await news.publish('4')
    await back.waitForEvents(3)
    t.same(datas(back), ['2', '3', '4'])
    const reloaded = await openStream(t, server, `/news?lastEventId=${ids[0]}`)
    await reloaded.waitForEvents(4)
    t.same(datas(reloaded), ['1', '2', '3', '4'], 'the query fallback works the same')
  })
}

test('replay and live events racing: nothing missed, nothing twice', async (t) => {
  // A store whose replay answers only when the test says so, as a remote store would, late.
  const reading = signalled()
  const release = signalled()
  const store = storeWith(async (inner, channel, lastEventId) => {
    reading.resolve()
    await release.promise
    return inner.readAfter(channel, lastEventId)
  })
  const server = await startServer(t, 'h2c', newsRoute, { plugin: { store } })
  const news = server.app.sse.channel('news')
  const ids = [await news.publish('0'), await news.publish('1')]
  const opening = openStream(t, server, '/news', { headers: { 'last-event-id': ids[0] } })
  await within(reading.promise, 'the replay to start')
  // Published while the replay is read: these are in the replay and delivered live as well.
  await news.publish('2')
  await news.publish('3')
  await new Promise((resolve) => setImmediate(resolve))
  const burst = Promise.all([news.publish('4'), news.publish('5')])
  release.resolve()
  await burst
  await news.publish('6')
  const client = await opening
  await client.waitForEvents(6)

  await news.publish('7')
  await client.waitForEvents(7)
  t.same(datas(client), ['1', '2', '3', '4', '5', '6', '7'])
})

test('events published just before a subscriber joins, still unflushed, are written once', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/news', (request, reply) => {
      const news = app.sse.channel('news')
      // Published in this tick: in the history already, and in the batch not yet written.
      news.publish('late-1').catch(() => {})
      news.publish('late-2').catch(() => {})
      return reply.sse(news)
    })
  })
  const news = server.app.sse.channel('news')
  const since = await news.publish('early')
  const client = await openStream(t, server, '/news', { headers: { 'last-event-id': since } })
  await client.waitForEvents(2)
  await news.publish('after')
  await client.waitForEvents(3)
  t.same(datas(client), ['late-1', 'late-2', 'after'])
})

test('history is bounded by count and by age; a subscriber past it is told it missed events', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    newsRoute(app)
    app.get('/clock', (request, reply) => { reply.sse() })
  }, { plugin: { historySize: 3, historyMaxAge: 200, heartbeatInterval: 50 } })
  const news = server.app.sse.channel('news')
  const ids: string[] = []
  for (let i = 0; i < 5; i++) ids.push(await news.publish(String(i)))
  const evicted = await openStream(t, server, '/news', { headers: { 'last-event-id': ids[0] } })
  await evicted.waitForEvents(4)
  t.same(evicted.events[0], { event: MISSED_EVENT, id: undefined, data: JSON.stringify({ channel: 'news', oldestId: ids[2] }) })
  t.same(datas(evicted), ['2', '3', '4'], 'then what is retained')
  const unknown = await openStream(t, server, '/news', { headers: { 'last-event-id': 'never-sent' } })
  await unknown.waitForEvents(4)
  t.equal(unknown.events[0].event, MISSED_EVENT)
  const retained = await openStream(t, server, '/news', { headers: { 'last-event-id': ids[3] } })
  await retained.waitForEvents(1)
  t.same(retained.events.map((event) => event.data), ['4'], 'no missed event when the id is retained')
  // Time passes (eight heartbeats of 50 ms): every event is now older than 200 ms.
  await (await openStream(t, server, '/clock')).waitForComments(8)
  const late = await openStream(t, server, '/news', { headers: { 'last-event-id': ids[3] } })
  await late.waitForEvents(1)
  t.same(late.events, [{ event: MISSED_EVENT, id: undefined, data: JSON.stringify({ channel: 'news', oldestId: null }) }])
})

test('HEAD on a channel route subscribes nothing', async (t) => {
  const server = await startServer(t, 'h2c', newsRoute)
  const head = await openStream(t, server, '/news', { method: 'HEAD' })
  await head.waitForEnd()
  t.equal(head.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.equal(server.app.sse.channel('news').subscribers, 0)
})

test('a filter picks each subscriber\'s events; a filter that throws closes only its own stream', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/user/:user', (request, reply) => {
      const { user } = request.params as { user: string }
      return reply.sse(app.sse.channel('notes'), { filter: (event) => (event.data as { to: string }).to === user })
    })
    app.get('/broken', (request, reply) => reply.sse(app.sse.channel('notes'), {
      filter: () => { throw new Error('broken filter') }
    }))
    app.get('/all', (request, reply) => reply.sse(app.sse.channel('notes')))
  })
  const notes = server.app.sse.channel('notes')
  const first = await notes.publish({ data: { to: 'ann', n: 0 } })
  const ann = await openStream(t, server, '/user/ann', { headers: { 'last-event-id': first } })
  const bob = await openStream(t, server, '/user/bob')
  const all = await openStream(t, server, '/all')
  const broken = await openStream(t, server, '/broken')
  // Its replay goes through the filter too.
  const brokenReplay = await openStream(t, server, '/broken', { headers: { 'last-event-id': 'unknown' } })
  await brokenReplay.waitForEnd()
  for (let n = 1; n <= 6; n++) await notes.publish({ data: { to: n % 2 === 0 ? 'ann' : 'bob', n } })
  await ann.waitForEvents(3)
  await bob.waitForEvents(3)
  await all.waitForEvents(6)
  await broken.waitForEnd()
  t.same(ann.events.map((event) => JSON.parse(event.data).n), [2, 4, 6])
  t.same(bob.events.map((event) => JSON.parse(event.data).n), [1, 3, 5])
  const logged = await server.logs.waitFor((record) => record.err?.message === 'broken filter', 'the filter error')
  t.match(logged, { level: 50, channel: 'notes' })
  t.equal(server.app.sse.channel('notes').subscribers, 3, 'the others are still subscribed')
})

test('a filter is refused with a source other than a channel', async (t) => {
  const server = await startServer(t, 'http1', (app) => {
    app.get('/', (request, reply) => reply.sse(['x'], { filter: () => true }))
  })
  const response = await server.app.inject('/')
  t.equal(response.statusCode, 500)
  t.equal(response.json().code, 'FST_SSE_INVALID_OPTION')
})

for (const protocol of PROTOCOLS_UNDER_TEST) {
  test(`${protocol}: closing a channel ends its subscribers and refuses what comes next`, async (t) => {
    const server = await startServer(t, protocol, (app) => {
      newsRoute(app)
      app.get('/closed', (request, reply) => reply.sse(closed))
    })
    const closed = server.app.sse.channel('closed')
    closed.close()
    const clients = await subscribers(t, server, 3)
    const news = server.app.sse.channel('news')
    await news.publish('last')
    await Promise.all(clients.map((client) => client.waitForEvents(1)))
    news.close()
    news.close()
    await Promise.all(clients.map((client) => client.waitForEnd()))
    t.equal(news.subscribers, 0)
    t.equal(news.closed, true)
    await t.rejects(news.publish('too late'), errors.FST_SSE_CHANNEL_CLOSED)
    const refused = await openStream(t, server, '/closed')
    await refused.waitForEnd()
    t.equal(refused.status, 500)
    t.match(JSON.parse(refused.text), { code: 'FST_SSE_CHANNEL_CLOSED' })
    t.not(server.app.sse.channel('news'), news, 'the name gives a new channel')
  })

  test(`${protocol}: app.close() with subscribers open ends them`, async (t) => {
    const server = await startServer(t, protocol, newsRoute)
    const clients = await subscribers(t, server, 50)
    await server.app.sse.channel('news').publish('hello')
    await Promise.all(clients.map((client) => client.waitForEvents(1)))
    await within(server.app.close(), 'app.close()')
    await Promise.all(clients.map((client) => client.waitForEnd()))
    t.pass('every subscriber saw its stream end')
  })
}

test('1,000 subscribers that never read cost bounded memory; readers get every event in order', async (t) => {
  const limit = 64 * 1024
  const handles: EventStream[] = []
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/news', (request, reply) => { handles.push(reply.sse(app.sse.channel('news'))) })
  }, { logLevel: 'warn', plugin: { maxBufferedBytes: limit } })
  // Readers and sleepers on separate connections: a connection's flow-control window is shared by its streams.
  const sleeperSessions = await Promise.all(Array.from({ length: 10 }, () => connectSession(t, server)))
  // Readers with a browser's flow-control windows (Chrome: 6 MiB a stream, 15 MiB a connection).
  const readerSession = await connectSession(t, server, { windowSize: 8 * 1024 * 1024 })
  const sleepers = await Promise.all(Array.from({ length: 1000 }, (_, i) =>
    openStream(t, server, '/news', { session: sleeperSessions[i % 10] })))
  for (const sleeper of sleepers) sleeper.pause()
  const readers = await Promise.all(Array.from({ length: 20 }, () => openStream(t, server, '/news', { session: readerSession })))
  const news = server.app.sse.channel('news')
  const payload = 'x'.repeat(1000)
  let mostBuffered = 0
  for (let i = 0; i < 300; i++) {
    await news.publish({ data: `${i} ${payload}` })
    // Ten events a turn of the event loop: readers read between turns, sleepers never do.
    if (i % 10 === 9) await new Promise((resolve) => setImmediate(resolve))
    for (const handle of handles) mostBuffered = Math.max(mostBuffered, handle.bufferedBytes)
  }
  await Promise.all(readers.map((reader) => reader.waitForEvents(300, 30_000)))
  const expected = Array.from({ length: 300 }, (_, i) => `${i} ${payload}`).join()
  t.ok(readers.every((reader) => reader.events.map((event) => event.data).join() === expected), 'readers: every event, in order')
  const slow = handles.filter((handle) => (handle.signal.reason as { code?: string } | undefined)?.code === 'FST_SSE_SLOW_CLIENT')
  t.equal(slow.length, 1000, 'every sleeper was closed as a slow client')
  // The bound, and what was written since the client last had a chance to take anything: the test's next ten
  // events can come in the same turn of the event loop as Node's own sending, ahead of it.
  t.ok(mostBuffered <= limit + 20 * 1100, `no stream ever held more than the bound and a turn's writes (${mostBuffered} bytes)`)
  t.equal(server.logs.atLeast(WARN).length, 1000, 'one warning each')
  t.equal(news.subscribers, 20)
})

test('a client that takes nothing for writeTimeout is dropped', async (t) => {
  const handle = signalled<EventStream>()
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/news', (request, reply) => { handle.resolve(reply.sse(app.sse.channel('news'))) })
  }, { plugin: { writeTimeout: 200, heartbeatInterval: 0, maxBufferedBytes: 16 * 1024 * 1024 } })
  const frozen = await openStream(t, server, '/news')
  frozen.pause()
  const news = server.app.sse.channel('news')
  // More than the client's flow-control windows take: writes wait for it from then on.
  for (let i = 0; i < 100; i++) await news.publish('y'.repeat(2048))
  const stream = await handle.promise
  await within(new Promise((resolve) => stream.signal.addEventListener('abort', resolve)), 'the frozen client to be dropped')
  t.match(stream.signal.reason, { code: 'FST_SSE_FROZEN_CLIENT' })
  const warning = await server.logs.waitFor((record) => record.level === WARN, 'the warning')
  t.match(warning, { msg: /longer than writeTimeout/, writeTimeout: 200 })
  t.ok((warning.waitedMs as number) >= 200)
})

test('a replay that fails refuses only that stream: 503, Retry-After, FST_SSE_CHANNEL_UNAVAILABLE', async (t) => {
  let calls = 0
  const broken = storeWith((inner, channel, lastEventId): Promise<Replay> => {
    // Where the channel stands (a store without head() is asked with an id no event has) is read.
    if (lastEventId === '\n') return Promise.resolve(inner.readAfter(channel, lastEventId))
    if (++calls === 1) throw new Error('store unreachable')
    return Promise.reject(new Error('store timed out'))
  })
  const server = await startServer(t, 'h2c', newsRoute, { plugin: { store: broken, shutdownRetry: { min: 2000, max: 2000 } } })
  const fresh = await openStream(t, server, '/news')
  for (const message of ['store unreachable', 'store timed out']) {
    const resuming = await openStream(t, server, '/news', { headers: { 'last-event-id': '1', accept: '*/*' } })
    await resuming.waitForEnd()
    t.equal(resuming.status, 503)
    t.equal(resuming.headers['retry-after'], '2', 'Retry-After drawn from shutdownRetry')
    t.match(JSON.parse(resuming.text), { code: 'FST_SSE_CHANNEL_UNAVAILABLE', message: new RegExp(`channel news .*\\(${message}\\)`) })
  }
  await server.app.sse.channel('news').publish('still live')
  await fresh.waitForEvents(1)
  t.equal(fresh.events[0].data, 'still live')
  t.equal(server.app.sse.channel('news').subscribers, 1, 'the refused streams hold nothing')
})

test('store options are checked when the plugin registers', async (t) => {
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ historySize: -1 }, /historySize must be a whole number/],
    [{ historyMaxAge: 1.5 }, /historyMaxAge must be a whole number/],
    [{ store: {} }, /store must be an object with append, readAfter, listen, unlisten, close methods/],
    [{ store: new MemoryStore(), historySize: 10 }, /historySize must be unset when a store is given/],
    [{ store: new MemoryStore(), historyMaxAge: 10 }, /historyMaxAge must be unset when a store is given/],
    [{ writeTimeout: -1 }, /writeTimeout must be a whole number/]
  ]
  for (const [options, message] of bad) {
    const app = Fastify()
    app.register(sse, options)
    await t.rejects(async () => await app.ready(), { code: 'FST_SSE_INVALID_OPTION', message }, JSON.stringify(Object.keys(options)))
    await app.close()
  }
  t.throws(() => new MemoryStore({ historySize: Number.NaN }), { code: 'FST_SSE_INVALID_OPTION' })
})

test('a store with no history replays nothing and says so', async (t) => {
  const server = await startServer(t, 'h2c', newsRoute, { plugin: { historySize: 0 } })
  const id = await server.app.sse.channel('news').publish('gone')
  const client = await openStream(t, server, '/news', { headers: { 'last-event-id': id } })
  await client.waitForEvents(1)
  t.same(client.events, [{ event: MISSED_EVENT, id: undefined, data: '{"channel":"news","oldestId":null}' }])
})

test('a subscriber that leaves while its replay is read gets nothing written, and nothing fails', async (t) => {
  const release = signalled()
  const slow = storeWith(async (inner, channel, lastEventId) => {
    await release.promise
    return inner.readAfter(channel, lastEventId)
  })
  const handle = signalled<EventStream>()
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/news', (request, reply) => { handle.resolve(reply.sse(app.sse.channel('news'))) })
  }, { plugin: { store: slow } })
  const id = await server.app.sse.channel('news').publish('missed')
  // The stream is answered once its replay is read: the client leaves before.
  const session = await connectSession(t, server)
  const request = session.request({ ':path': '/news', accept: 'text/event-stream', 'last-event-id': id })
  request.on('error', () => {})
  const stream = await handle.promise
  t.equal(stream.send('its own, while the replay is read'), false, 'held behind the replay: wait for drained()')
  const drained = stream.drained()
  request.close(http2.constants.NGHTTP2_CANCEL)
  await within(once(request, 'close'), 'the client to leave')
  release.resolve()
  await within(new Promise((resolve) => stream.signal.addEventListener('abort', resolve)), 'the server to see it gone')
  await within(drained, 'drained() to resolve: the stream is gone')
  t.match(stream.signal.reason, { code: 'FST_SSE_CLIENT_CLOSED' })
  await server.app.sse.channel('news').publish('after')
  t.equal(server.app.sse.channel('news').subscribers, 0)
  t.same(server.logs.atLeast(WARN), [])
})

test('writeTimeout: 0 never drops a client that is behind; send() on a subscriber keeps its order', async (t) => {
  const handle = signalled<EventStream>()
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/news', (request, reply) => { handle.resolve(reply.sse(app.sse.channel('news'))) })
  }, { plugin: { writeTimeout: 0, heartbeatInterval: 0, maxBufferedBytes: 16 * 1024 * 1024 } })
  const clock = await startServer(t, 'h2c', (app) => {
    app.get('/', (request, reply) => { reply.sse() })
  }, { plugin: { writeTimeout: 0, heartbeatInterval: 40 } })
  const behind = await openStream(t, server, '/news')
  behind.pause()
  const news = server.app.sse.channel('news')
  for (let i = 0; i < 60; i++) await news.publish(String(i).padEnd(2048, '.'))
  const stream = await handle.promise
  // Its own event, queued while the client is behind, then a live one: they arrive in that order.
  stream.send('own')
  stream.comment('a note')
  await news.publish('live')
  await (await openStream(t, clock, '/')).waitForComments(10)
  t.equal(stream.closed, false, 'ten heartbeat intervals later it is still open')
  behind.resume()
  await behind.waitForEvents(62)
  t.same(behind.events.slice(-2).map((event) => event.data), ['own', 'live'])
  stream.send('later')
  await behind.waitForEvents(63)
  t.equal(behind.events[62].data, 'later')
})

import { test, type Test } from 'tap'
import { EventEmitter } from 'node:events'
import { EventSource } from 'eventsource'
import { Agent, fetch as undiciFetch } from 'undici'
import type { FastifyInstance } from 'fastify'
import { PROTOCOLS, startServer, type Protocol, type TestServer } from './helpers/server'
import { connectSession, openStream, type SseClient } from './helpers/client'
import { startRedis } from './helpers/redis'
import { missingService, mustSkip } from './helpers/services'
import { signalled, waitUntil } from './helpers/wait'
import { WARN } from './helpers/logs'
import { RedisStore } from '../redis'
import { MISSED_EVENT, type Channel, type EventStream } from '../index'
import { isCursor } from '../lib/protocol/cursor-encoding'
import { MemoryStore } from '../lib/stores/memory-store'
import { storeOver } from './helpers/store-over'
import type { Replay } from '../lib/stores/store'

// One stream, many channels: reply.sse([...]), stream.subscribe()/unsubscribe(), and one cursor that resumes them all.

interface Note {
  to: string
  n: number
}

/** The data of a client's events of one channel (events whose data starts with `<channel>:`), in order. */
function of (client: SseClient | Array<{ data: string }>, channel: string): string[] {
  const events = Array.isArray(client) ? client : client.events
  return events.map((event) => event.data).filter((data) => data.startsWith(`${channel}:`))
}

function lastId (client: SseClient): string {
  return client.events.findLast((event) => event.id !== undefined)?.id as string
}

/** `count` publishes of `<channel>:<from + i>` to each channel, all in one tick. */
function publishAll (app: FastifyInstance, channels: string[], from: number, count: number): Promise<string[]> {
  const published: Array<Promise<string>> = []
  for (let i = from; i < from + count; i++) {
    for (const name of channels) published.push(app.sse.channel(name).publish({ data: `${name}:${i}` }))
  }
  return Promise.all(published)
}

function range (channel: string, from: number, to: number): string[] {
  return Array.from({ length: to - from }, (_, i) => `${channel}:${from + i}`)
}

function dashboard (app: FastifyInstance): void {
  app.get('/dashboard/:user', (request, reply) => {
    const { user } = request.params as { user: string }
    return reply.sse([
      app.sse.channel('prices'),
      { channel: app.sse.channel('alerts'), filter: (event) => (event.data as Note).to === user },
      app.sse.channel('news')
    ])
  })
}

for (const protocol of PROTOCOLS) {
  test(`${protocol}: one stream of three channels gets each channel's events in its order, once, each with a cursor`, async (t) => {
    const server = await startServer(t, protocol, dashboard)
    const client = await openStream(t, server, '/dashboard/ann')
    const { app } = server
    // Interleaved, in one tick and over several.
    await publishAll(app, ['prices', 'news'], 0, 3)
    await app.sse.channel('alerts').publish({ data: { to: 'ann', n: 0 } })
    await app.sse.channel('alerts').publish({ data: { to: 'bob', n: 1 } })
    const own = await app.sse.channel('news').publish({ id: 'own-7', data: 'news:3' })
    // Not waited for: the stream is asked for its events in the tick of the publishes.
    const last = Promise.all([app.sse.channel('prices').publish({ data: 'prices:3' }),
      app.sse.channel('alerts').publish({ data: { to: 'ann', n: 2 } })])
    await client.waitForEvents(10)
    await last
    t.same(of(client, 'prices'), range('prices', 0, 4))
    t.same(of(client, 'news'), range('news', 0, 4))
    t.same(client.events.filter((event) => event.data.startsWith('{')).map((event) => (JSON.parse(event.data) as Note).n), [0, 2],
      'the alerts the filter let through')
    t.equal(own, 'own-7', 'publish() resolves to the publisher\'s id')
    t.ok(client.events.every((event) => event.id !== undefined && isCursor(event.id)), 'every id is a cursor, the publisher\'s own too')
    t.equal(new Set(client.events.map((event) => event.id)).size, client.events.length, 'each event its own')
    t.same(server.logs.atLeast(WARN), [])
  })
}

test('the eventsource package reconnects with the cursor and gets exactly what each channel published while away', async (t) => {
  const streams = new Set<EventStream>()
  const headers: Array<string | undefined> = []
  const opened = new EventEmitter()
  const channels = ['a', 'b', 'c']
  const server = await startServer(t, 'http1', (app) => {
    app.get('/feed', (request, reply) => {
      headers.push(request.headers['last-event-id'] as string | undefined)
      const stream = reply.sse(channels.map((name) => app.sse.channel(name)))
      streams.add(stream)
      stream.signal.addEventListener('abort', () => streams.delete(stream))
      opened.emit('open')
    })
  }, { plugin: { retry: 50 } })
  const received: Array<{ data: string, id: string }> = []
  const arrived = new EventEmitter()
  // Its own connections, let go of at the end: a connection the pool opened and never used would hold app.close().
  const dispatcher = new Agent()
  const source = new EventSource(`${server.origin}/feed`, { fetch: async (url, init) => await undiciFetch(url, { ...init, dispatcher }) })
  t.teardown(async () => {
    source.close()
    await dispatcher.destroy()
  })
  source.addEventListener('message', (event) => {
    received.push({ data: String(event.data), id: event.lastEventId })
    arrived.emit('change')
  })
  await waitUntil(opened, 'open', () => (headers.length === 1 ? true : undefined), 'the stream')
  const { app } = server
  await publishAll(app, channels, 0, 3)
  await waitUntil(arrived, 'change', () => (received.length >= 9 ? true : undefined), '9 events')
  // Closed by the server in the tick of a publish: what came before the close goes out, the rest is owed.
  const around = [publishAll(app, channels, 3, 1)]
  for (const stream of streams) stream.close()
  around.push(publishAll(app, channels, 4, 2))
  await waitUntil(opened, 'open', () => (headers.length === 2 ? true : undefined), 'the reconnect')
  await Promise.all(around)
  await publishAll(app, channels, 6, 2)
  await waitUntil(arrived, 'change', () => (received.length >= 24 ? true : undefined), `24 events (got ${received.length})`)
  for (const name of channels) t.same(of(received, name), range(name, 0, 8), `${name}: every event once, in order`)
  t.ok(headers[1] !== undefined && isCursor(headers[1]), `it came back with a cursor: ${String(headers[1])}`)
  t.equal(headers[1], received[11].id, 'the id of the last event before the close')
  t.same(server.logs.atLeast(WARN), [])
})

test('50 channels: one cursor of a few hundred characters resumes every one of them, by header or by query', async (t) => {
  const names = Array.from({ length: 50 }, (_, i) => `room:${i}`)
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/rooms', (request, reply) => reply.sse(names.map((name) => app.sse.channel(name))))
  })
  const { app } = server
  const first = await openStream(t, server, '/rooms')
  await publishAll(app, names, 0, 2)
  await first.waitForEvents(100)
  first.close()
  const cursor = lastId(first)
  t.ok(cursor.length < 700, `${cursor.length} characters`)
  await publishAll(app, names, 2, 1)
  const session = await connectSession(t, server)
  const byHeader = await openStream(t, server, '/rooms', { session, headers: { 'last-event-id': cursor } })
  const byQuery = await openStream(t, server, `/rooms?lastEventId=${encodeURIComponent(cursor)}`, { session })
  await publishAll(app, names, 3, 1)
  for (const client of [byHeader, byQuery]) {
    await client.waitForEvents(100)
    t.ok(names.every((name) => of(client, name).join() === `${name}:2,${name}:3`), 'each channel: the one it missed, then the live one')
    t.equal(client.events.length, 100)
  }
})

test('a channel whose history no longer reaches the cursor gets missed, naming it; the others resume', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/ab', (request, reply) => reply.sse([app.sse.channel('a'), app.sse.channel('b')]))
  }, { plugin: { historySize: 3 } })
  const { app } = server
  const first = await openStream(t, server, '/ab')
  await publishAll(app, ['a', 'b'], 0, 2)
  await first.waitForEvents(4)
  first.close()
  await publishAll(app, ['a'], 2, 1)
  const ids = await publishAll(app, ['b'], 2, 5)
  const back = await openStream(t, server, '/ab', { headers: { 'last-event-id': lastId(first) } })
  await back.waitForEvents(5)
  const missed = back.events.filter((event) => event.event === MISSED_EVENT)
  t.same(missed.map((event) => JSON.parse(event.data)), [{ channel: 'b', oldestId: ids[2] }], 'b missed events; its oldest retained is said')
  t.same(of(back, 'a'), ['a:2'])
  t.same(of(back, 'b'), range('b', 4, 7), 'then what b retains')
  t.ok(missed[0].id !== undefined && isCursor(missed[0].id), 'missed carries the cursor: a reconnect now is not told again')
  back.close()
  const again = await openStream(t, server, '/ab', { headers: { 'last-event-id': missed[0].id as string } })
  await publishAll(app, ['a', 'b'], 9, 1)
  await again.waitForEvents(5)
  t.same(again.events.map((event) => event.data), [...range('b', 4, 7), 'a:9', 'b:9'], 'b from all it retains, without missed')
})

test('a store without readAfterPosition is asked readAfter() with the position: right for events without ids of their own', async (t) => {
  const inner = new MemoryStore()
  const asked: string[] = []
  // A store of one's own that predates streams of several channels.
  const store = storeOver(inner, {
    readAfter: (channel, lastEventId) => {
      asked.push(`${channel} ${lastEventId}`)
      return inner.readAfter(channel, lastEventId)
    }
  })
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/ab', (request, reply) => reply.sse([app.sse.channel('a'), app.sse.channel('b')]))
  }, { plugin: { store } })
  const { app } = server
  const first = await openStream(t, server, '/ab')
  const [a0, b0] = await publishAll(app, ['a', 'b'], 0, 1)
  await first.waitForEvents(2)
  first.close()
  await publishAll(app, ['a', 'b'], 1, 2)
  const back = await openStream(t, server, '/ab', { headers: { 'last-event-id': lastId(first) } })
  await back.waitForEvents(4)
  t.same(asked.filter((read) => !read.endsWith('\n')), [`a ${a0}`, `b ${b0}`], 'each channel asked after its position, as an id')
  t.same(asked.filter((read) => read.endsWith('\n')), ['a \n', 'b \n'],
    'without head(), where each channel stands is read once, by an id no event has, when it is first subscribed')
  t.same([of(back, 'a'), of(back, 'b')], [range('a', 1, 3), range('b', 1, 3)], 'exactly what each published while away')
})

test('a stream of several channels is answered once each store said where it starts; one that cannot refuses it', async (t) => {
  const inner = new MemoryStore()
  // Each resume by position waits until the test answers it: with the replay, or with a failure.
  const asked = new EventEmitter()
  const pending = new Map<string, { answer: () => void, fail: (error: Error) => void }>()
  const store = storeOver(inner, {
    readAfterPosition: async (channel, position) => await new Promise<Replay>((resolve, reject) => {
      pending.set(channel, { answer: () => resolve(inner.readAfterPosition(channel, position)), fail: reject })
      asked.emit('asked')
    })
  })
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/ab', (request, reply) => reply.sse([app.sse.channel('a'), app.sse.channel('b')]))
  }, { plugin: { store } })
  const { app } = server
  const first = await openStream(t, server, '/ab')
  await publishAll(app, ['a', 'b'], 0, 1)
  await first.waitForEvents(2)
  first.close()
  await publishAll(app, ['a', 'b'], 1, 1)
  const both = async (): Promise<boolean> => await waitUntil(asked, 'asked', () => (pending.size === 2 ? true : undefined), 'both replays asked')

  const opening = openStream(t, server, '/ab', { headers: { 'last-event-id': lastId(first) } })
  await both()
  pending.get('b')?.answer()
  let answered = false
  const opened = opening.then((client) => { answered = true; return client })
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(answered, false, 'one channel answered: not yet')
  pending.get('a')?.answer()
  const back = await opened
  t.equal(back.status, 200, 'both answered: the stream opens')
  await back.waitForEvents(2)
  t.same([of(back, 'a'), of(back, 'b')], [['a:1'], ['b:1']])
  back.close()

  pending.clear()
  const refused = openStream(t, server, '/ab', { headers: { 'last-event-id': lastId(first), accept: '*/*' } })
  await both()
  pending.get('b')?.fail(new Error('store away'))
  const client = await refused
  await client.waitForEnd()
  t.equal(client.status, 503)
  t.match(JSON.parse(client.text), { code: 'FST_SSE_CHANNEL_UNAVAILABLE', message: /channel b .*\(store away\)/ })
  pending.get('a')?.answer()
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(app.sse.channel('a').subscribers + app.sse.channel('b').subscribers, 0, 'the refused stream holds nothing')

  // A store that fails with what is not an Error.
  pending.clear()
  const oddly = openStream(t, server, '/ab', { headers: { 'last-event-id': lastId(first), accept: '*/*' } })
  await both()
  pending.get('a')?.fail('no connection' as unknown as Error)
  const odd = await oddly
  await odd.waitForEnd()
  t.match({ status: odd.status, body: JSON.parse(odd.text) }, { status: 503, body: { code: 'FST_SSE_CHANNEL_UNAVAILABLE', message: /channel a .*no connection/ } })
  pending.get('b')?.answer()
})

test('subscribe and unsubscribe on an open stream: a push handle joins and leaves rooms, and stays open', async (t) => {
  const streams = new Map<string, EventStream>()
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/me/:user', (request, reply) => {
      const stream = reply.sse()
      streams.set((request.params as { user: string }).user, stream)
    })
    app.post('/me/:user/join/:room', async (request) => {
      const { user, room } = request.params as { user: string, room: string }
      streams.get(user)?.subscribe(app.sse.channel(room))
      return { ok: true }
    })
    app.post('/me/:user/leave/:room', async (request) => {
      const { user, room } = request.params as { user: string, room: string }
      streams.get(user)?.unsubscribe(app.sse.channel(room))
      return { ok: true }
    })
  })
  const { app } = server
  const ann = await openStream(t, server, '/me/ann')
  const post = async (path: string): Promise<void> => { t.equal((await app.inject({ method: 'POST', url: path })).statusCode, 200) }
  await app.sse.channel('r1').publish('r1:before')
  await post('/me/ann/join/r1')
  await publishAll(app, ['r1', 'r2'], 0, 1)
  await post('/me/ann/join/r2')
  await publishAll(app, ['r1', 'r2'], 1, 1)
  await ann.waitForEvents(3)
  streams.get('ann')?.send('own: a message of its own, no id')
  // Published before the leave: still delivered; after it: not.
  const beforeLeave = app.sse.channel('r1').publish('r1:2')
  await post('/me/ann/leave/r1')
  await beforeLeave
  await publishAll(app, ['r1', 'r2'], 3, 1)
  await ann.waitForEvents(6)
  t.same(ann.events.map((event) => event.data), ['r1:0', 'r1:1', 'r2:1', 'own: a message of its own, no id', 'r1:2', 'r2:3'])
  t.notOk(ann.ended, 'the stream stays open')
  t.equal(app.sse.channel('r1').subscribers, 0)
  t.equal(app.sse.channel('r2').subscribers, 1)
  t.ok(ann.events.filter((event) => event.data.startsWith('r')).every((event) => isCursor(event.id as string)), 'channel events carry cursors')
  t.equal(ann.events[3].id, undefined, 'its own event carries none')
  t.throws(() => streams.get('ann')?.send({ id: 'x', data: 'mine' }), { code: 'FST_SSE_CURSOR_ID' }, 'nor may it')
})

test('a channel stream that subscribes to more; a stream resumed later re-subscribes and resumes', async (t) => {
  // The handler subscribes to the user's rooms once it has looked them up: later than the stream opened.
  let lookedUp = signalled<string[]>()
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/lobby', (request, reply) => {
      const stream = reply.sse(app.sse.channel('lobby'))
      lookedUp.promise.then((rooms) => { for (const room of rooms) stream.subscribe(app.sse.channel(room)) }, () => {})
    })
  })
  const { app } = server
  const first = await openStream(t, server, '/lobby')
  await app.sse.channel('lobby').publish('lobby:0')
  await first.waitForEvents(1)
  t.match(first.events[0].id, /^\d+$/, 'one channel: its own ids')
  lookedUp.resolve(['r1'])
  await lookedUp.promise
  await publishAll(app, ['lobby', 'r1'], 1, 2)
  await first.waitForEvents(5)
  t.ok(isCursor(lastId(first)), 'from the second channel on: cursors')
  first.close()
  await publishAll(app, ['lobby', 'r1'], 3, 1)
  // Back with the cursor: lobby resumes at once, and r1, subscribed to a moment later, from its position too.
  lookedUp = signalled<string[]>()
  const second = await openStream(t, server, '/lobby', { headers: { 'last-event-id': lastId(first) } })
  await second.waitForEvents(1)
  t.same(second.events.map((event) => event.data), ['lobby:3'])
  t.ok(isCursor(lastId(second)), 'a client that came with a cursor gets cursors')
  // Gone before r1 was subscribed to again: its cursor still holds r1's position, written on as it came.
  second.close()
  await publishAll(app, ['lobby', 'r1'], 4, 1)
  lookedUp = signalled<string[]>()
  const third = await openStream(t, server, '/lobby', { headers: { 'last-event-id': lastId(second) } })
  await third.waitForEvents(1)
  lookedUp.resolve(['r1'])
  await third.waitForEvents(3)
  t.same(third.events.map((event) => event.data), ['lobby:4', 'r1:3', 'r1:4'])
})

test('streams of ten channels: each event is serialized once, whatever the number of streams', async (t) => {
  let serialized = 0
  const names = Array.from({ length: 10 }, (_, i) => `c${i}`)
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/ten', (request, reply) => reply.sse(names.map((name) => app.sse.channel(name))))
  }, { plugin: { serializer: (data) => { serialized++; return JSON.stringify(data) } } })
  const sessions = [await connectSession(t, server), await connectSession(t, server)]
  const clients = await Promise.all(Array.from({ length: 100 }, (_, i) => openStream(t, server, '/ten', { session: sessions[i % 2] })))
  const published: Array<Promise<string>> = []
  for (let i = 0; i < 20; i++) for (const name of names) published.push(server.app.sse.channel(name).publish({ data: { name, i } }))
  await Promise.all(published)
  await Promise.all(clients.map((client) => client.waitForEvents(200)))
  t.equal(serialized, 200, '200 events, 200 serializations, for 100 streams')
  t.ok(clients.every((client) => client.events.length === 200))
})

async function statusOf (t: Test, server: TestServer, path: string): Promise<number> {
  const client = await openStream(t, server, path)
  return client.status
}

test('what cannot be subscribed is refused with a coded error; other streams go on', async (t) => {
  const streams: EventStream[] = []
  let gone!: Channel
  const server = await startServer(t, 'h2c', (app) => {
    const schema = { type: 'object', properties: { n: { type: 'integer' } } }
    app.sse.channel('typed', { schema })
    // Closed: app.sse.channel('gone') would give a new one.
    gone = app.sse.channel('gone')
    gone.close().catch(() => {})
    const many = Array.from({ length: 129 }, (_, i) => app.sse.channel(`m${i}`))
    const routes: Record<string, () => unknown> = {
      '/not-a-channel': () => [app.sse.channel('a'), 'b'],
      '/extra-key': () => [{ channel: app.sse.channel('a'), filters: () => true }],
      '/bad-filter': () => [{ channel: app.sse.channel('a'), filter: 'to ann' }],
      '/too-many': () => many,
      '/closed': () => [app.sse.channel('a'), gone]
    }
    for (const [path, source] of Object.entries(routes)) app.get(path, (request, reply) => reply.sse(source() as never))
    app.get('/filter-option', (request, reply) => reply.sse([app.sse.channel('a')], { filter: () => true }))
    app.get('/schema', { schema: { response: { 200: { content: { 'text/event-stream': { schema } } } } } },
      (request, reply) => {
        const stream = reply.sse([app.sse.channel('typed')])
        streams.push(stream)
        return stream
      })
    app.get('/schema-mismatch', { schema: { response: { 200: { content: { 'text/event-stream': { schema } } } } } },
      (request, reply) => reply.sse([app.sse.channel('typed'), app.sse.channel('a')]))
    app.get('/push', (request, reply) => { streams.push(reply.sse()) })
  })
  const { app } = server
  const codes: Record<string, string> = {
    '/not-a-channel': 'FST_SSE_NOT_A_CHANNEL',
    '/extra-key': 'FST_SSE_NOT_A_CHANNEL',
    '/bad-filter': 'FST_SSE_INVALID_OPTION',
    '/too-many': 'FST_SSE_TOO_MANY_CHANNELS',
    '/closed': 'FST_SSE_CHANNEL_CLOSED',
    '/filter-option': 'FST_SSE_INVALID_OPTION',
    '/schema-mismatch': 'FST_SSE_SCHEMA_MISMATCH'
  }
  const live = await openStream(t, server, '/schema')
  for (const [path, code] of Object.entries(codes)) {
    t.equal(await statusOf(t, server, path), 500, `${path}: an error response`)
    t.ok(server.logs.records.some((record) => record.err?.code === code), `${path}: ${code}`)
  }
  await openStream(t, server, '/push')
  const [typed, push] = streams
  t.throws(() => typed.subscribe(app.sse.channel('a')), { code: 'FST_SSE_SCHEMA_MISMATCH' }, 'a route with an event schema')
  t.throws(() => push.subscribe('news' as never), { code: 'FST_SSE_NOT_A_CHANNEL', message: /stream\.subscribe\(\) takes a channel/ })
  t.throws(() => push.unsubscribe({ name: 'news' } as never), { code: 'FST_SSE_NOT_A_CHANNEL' })
  t.throws(() => push.subscribe(app.sse.channel('a'), { filters: () => true } as never), { code: 'FST_SSE_INVALID_OPTION', message: /did you mean filter/ })
  t.throws(() => push.subscribe(app.sse.channel('a'), 'x' as never), { code: 'FST_SSE_INVALID_OPTION' })
  t.throws(() => push.subscribe(gone), { code: 'FST_SSE_CHANNEL_CLOSED' })
  for (let i = 0; i < 128; i++) push.subscribe(app.sse.channel(`m${i}`))
  t.throws(() => push.subscribe(app.sse.channel('m128')), { code: 'FST_SSE_TOO_MANY_CHANNELS', message: /at most 128 channels/ })
  push.subscribe(app.sse.channel('m0'), { filter: () => false })
  t.equal(push.subscriptions.length, 128, 'subscribing again changes the filter only')
  push.unsubscribe(app.sse.channel('never-subscribed'))
  await app.sse.channel('typed').publish({ data: { n: 1, secret: 'dropped by the schema' } })
  await live.waitForEvents(1)
  t.same(live.events.map((event) => event.data), ['{"n":1}'], 'the other streams go on')
  push.close()
  push.subscribe(app.sse.channel('a'))
  t.equal(app.sse.channel('a').subscribers, 0, 'a closed stream subscribes to nothing')
})

test('a list that names a channel twice subscribes once, with the last filter; a store whose head() answers at once', async (t) => {
  const inner = new MemoryStore()
  // A store that can say where a channel stands at once, as one over a database might.
  const store = storeOver(inner, { head: (channel) => inner.readAfter(channel, '\n').events.at(-1)?.position })
  const server = await startServer(t, 'h2c', (app) => {
    const a = app.sse.channel('a')
    app.get('/twice', (request, reply) => reply.sse([a, app.sse.channel('b'), { channel: a, filter: (event) => event.data !== 'a:0' }]))
  }, { plugin: { store } })
  const { app } = server
  await publishAll(app, ['a', 'b'], 100, 1)
  const client = await openStream(t, server, '/twice')
  t.equal(app.sse.channel('a').subscribers, 1, 'one subscription to a')
  await publishAll(app, ['a', 'b'], 0, 2)
  await client.waitForEvents(3)
  t.same([of(client, 'a'), of(client, 'b')], [['a:1'], ['b:0', 'b:1']], 'from the head on, a through its last filter')
  t.same(server.logs.atLeast(WARN), [])
})

test('events that arrive while head() is on its way and that the filter skips: nothing written, the next ones are', async (t) => {
  const inner = new MemoryStore()
  const asked = new EventEmitter()
  let answer: ((position: string | undefined) => void) | undefined
  const store = storeOver(inner, {
    head: async () => await new Promise((resolve) => {
      answer = resolve
      asked.emit('asked')
    })
  })
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/a', (request, reply) => reply.sse([{ channel: app.sse.channel('a'), filter: (event) => event.data !== 'a:skipped' }]))
  }, { plugin: { store } })
  const { app } = server
  const opening = openStream(t, server, '/a')
  await waitUntil(asked, 'asked', () => (answer === undefined ? undefined : true), 'head() asked')
  // Handed to the subscription while it waits for head(): held back, then skipped by its filter.
  await app.sse.channel('a').publish('a:skipped')
  answer?.(undefined)
  const client = await opening
  await app.sse.channel('a').publish('a:1')
  await client.waitForEvents(1)
  t.same(client.events.map((event) => event.data), ['a:1'])
})

test('a pulled source whose stream subscribes to a channel: its events then take no id either', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/pulled', (request, reply) => {
      const stream: EventStream = reply.sse(async function * () {
        yield { id: 'mine-1', data: 'before: an id of its own' }
        // Pulled after reply.sse() returned.
        stream.subscribe(app.sse.channel('a'))
        yield { data: 'after: no id' }
        yield { id: 'mine-2', data: 'after, with an id' }
      })
      return stream
    })
  })
  const client = await openStream(t, server, '/pulled')
  await client.waitForEnd()
  t.same(client.events.map((event) => [event.id, event.data]), [['mine-1', 'before: an id of its own'], [undefined, 'after: no id']])
  t.ok(server.logs.records.some((record) => record.err?.code === 'FST_SSE_CURSOR_ID'), 'the source failed with FST_SSE_CURSOR_ID')
})

test('hostile cursors: ignored, or resumed as far as they read; nothing else is stopped', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/ab', (request, reply) => reply.sse([app.sse.channel('a'), app.sse.channel('b')]))
  })
  const { app } = server
  const first = await openStream(t, server, '/ab')
  await publishAll(app, ['a', 'b'], 0, 1)
  await first.waitForEvents(2)
  const real = lastId(first)
  const key = real.split('.')[1].slice(0, 6)
  const hostile = [
    `~0${'z'.repeat(4000)}`, `~00.${key}${'1'.repeat(20)}`, `~00.${key}zzzzzzzzzz`, `~0${'1'.repeat(11)}.${key}0`,
    `${real}${'.abcdef1'.repeat(200)}`, `~00${'.abcdef1'.repeat(400)}`, real.replace('~0', '~z')
  ]
  const clients = await Promise.all(hostile.map(async (id) => await openStream(t, server, '/ab', { headers: { 'last-event-id': id } })))
  await publishAll(app, ['a', 'b'], 1, 1)
  for (const [i, client] of clients.entries()) {
    await waitUntil(client, 'change', () => (of(client, 'a').includes('a:1') && of(client, 'b').includes('b:1') ? true : undefined),
      `the live events on stream ${i}`)
    t.same(client.events.slice(-2).map((event) => event.data), ['a:1', 'b:1'], `hostile cursor ${i}: then the live events`)
  }
  t.same(server.logs.atLeast(WARN), [])
  t.ok(server.logs.withMessage('ignored a last event id that is longer than 256 characters').length >= 1,
    'the longest of those that do not begin as a cursor ignored')
})

test('redis store: a cursor from one instance resumes every channel on another', { skip: mustSkip(missingService('redis-server')) },
  async (t) => {
    const redis = await startRedis(t)
    const channels = ['x', 'y', 'z']
    const instance = async (protocol: Protocol): Promise<TestServer> => await startServer(t, protocol, (app) => {
      app.get('/xyz', (request, reply) => reply.sse(channels.map((name) => app.sse.channel(name))))
      app.get('/x', (request, reply) => reply.sse([app.sse.channel('x')]))
    }, { plugin: { store: new RedisStore({ redis: redis.url, prefix: 'many:' }) } })
    const a = await instance('h2c')
    const b = await instance('http1')
    const onA = await openStream(t, a, '/xyz')
    // A channel is read from Redis once it is followed: the warm-up events say it is.
    await publishAll(b.app, channels, 0, 1)
    await onA.waitForEvents(3)
    await publishAll(b.app, channels, 1, 2)
    await onA.waitForEvents(9)
    onA.close()
    await publishAll(a.app, channels, 3, 1)
    await publishAll(b.app, channels, 4, 1)
    const onB = await openStream(t, b, '/xyz', { headers: { 'last-event-id': lastId(onA) } })
    await publishAll(a.app, channels, 5, 1)
    await onB.waitForEvents(9)
    for (const name of channels) t.same(of(onB, name), range(name, 3, 6), `${name}: what it missed, from both instances, then live`)
    t.same(onB.events.filter((event) => event.event === MISSED_EVENT), [], 'nothing missed')
    // Left by its only subscriber, a channel is no longer read; the others are.
    const { app } = b
    const left = await openStream(t, b, '/xyz')
    await publishAll(a.app, channels, 6, 1)
    await left.waitForEvents(3)
    onB.close()
    left.close()
    const only = await openStream(t, b, '/x')
    await publishAll(a.app, ['x'], 7, 1)
    await only.waitForEvents(1)
    t.same(of(only, 'x'), ['x:7'])
    t.equal(app.sse.channel('y').subscribers, 0)
  })

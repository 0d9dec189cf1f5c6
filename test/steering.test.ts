import { test } from 'tap'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import { startServer, type Protocol } from './helpers/server'
import { openStream, type SseClient } from './helpers/client'
import { waitUntil } from './helpers/wait'
import sse, { MemoryStore, MISSED_EVENT, type StreamCloseMessage } from '../index'

// Steering on one instance (the memory store), over each protocol: every kind of stream answers to its tags.

const PROTOCOLS_UNDER_TEST: Protocol[] = ['h2c', 'h2', 'http1']

const KINDS = ['push', 'pulled', 'channel', 'dashboard'] as const

/** Each user's rooms, as the app keeps them: what /dashboard gives a stream, and a reconnect. */
type Memberships = Map<string, Set<string>>

function tagsOf (request: FastifyRequest): string[] {
  return [`user:${(request.query as { user: string }).user}`, 'everyone']
}

function steeredRoutes (app: FastifyInstance, memberships: Memberships): void {
  app.get('/push', (request, reply) => {
    const stream = reply.sse(undefined, { tags: tagsOf(request) })
    stream.send({ event: 'hello', data: 'push' })
  })
  app.get('/pulled', (request, reply) => reply.sse(async function * ({ signal }) {
    yield { event: 'hello', data: 'pulled' }
    await new Promise((resolve) => signal.addEventListener('abort', resolve))
  }, { tags: tagsOf(request) }))
  app.get('/channel', (request, reply) => reply.sse(app.sse.channel('prices'), { tags: tagsOf(request) }))
  app.get('/dashboard', (request, reply) => {
    const rooms = memberships.get((request.query as { user: string }).user) ?? new Set()
    return reply.sse([app.sse.channel('prices'), ...[...rooms].map((room) => app.sse.channel(room))], { tags: tagsOf(request) })
  })
}

function roomEvents (client: SseClient, room: string): string[] {
  return client.events.filter((event) => event.event === room).map((event) => event.data)
}

async function until (client: SseClient, what: string, check: () => boolean): Promise<void> {
  await waitUntil(client, 'change', () => check() ? true : undefined, what)
}

for (const protocol of PROTOCOLS_UNDER_TEST) {
  test(`${protocol}: tagged() closes, subscribes, unsubscribes and counts every kind of stream`, async (t) => {
    const memberships: Memberships = new Map()
    const server = await startServer(t, protocol, (app) => steeredRoutes(app, memberships), {
      plugin: { shutdownRetry: { min: 50, max: 60 } }
    })
    const { app } = server
    const open = async (kind: string, user: string): Promise<SseClient> => await openStream(t, server, `/${kind}?user=${user}`)
    const ann = await Promise.all(KINDS.map(async (kind) => await open(kind, 'ann')))
    const bob = await Promise.all(KINDS.map(async (kind) => await open(kind, 'bob')))
    t.same(ann.map((client) => client.status), [200, 200, 200, 200])
    t.equal(await app.sse.tagged('user:ann').count(), 4, 'ann\'s four streams')
    t.equal(await app.sse.tagged('everyone').count(), 8, 'a stream answers to each of its tags')
    t.equal(await app.sse.tagged('user:nobody').count(), 0)

    // ann joins room:7: the app records it (for her next connection), then subscribes her open streams.
    memberships.set('ann', new Set(['room:7']))
    const room = app.sse.channel('room:7')
    const subscribed = await app.sse.tagged('user:ann').subscribe(room)
    t.same(subscribed, { streams: 4, unanswered: [] }, 'applied to her four streams')
    // Published in the same tick as subscribe() resolved: every one of her streams gets it.
    const first = await room.publish({ event: 'room:7', data: 'first' })
    await Promise.all(ann.map(async (client) => await until(client, 'the room\'s first event', () => roomEvents(client, 'room:7').length === 1)))
    t.same((await room.presence()), { subscribers: 4 }, 'the room\'s presence: ann\'s streams')
    t.same((await app.sse.channel('prices').presence()).subscribers, 4, 'prices: two streams each')
    t.ok(ann.every((client) => roomEvents(client, 'room:7').join() === 'first'), 'once each')
    t.ok(bob.every((client) => roomEvents(client, 'room:7').length === 0), 'bob is not in the room')
    // A stream of one channel became one of several: its ids are cursors now.
    const channelStream = ann[2]
    const cursor = channelStream.events.at(-1)?.id as string
    t.match(cursor, /^~/, 'the channel stream\'s ids became cursors')
    t.not(cursor, first)

    // It reconnects, to a route that gives it the room too: it resumes both channels exactly.
    channelStream.close()
    await app.sse.channel('prices').publish({ event: 'prices', data: 'while away' })
    await room.publish({ event: 'room:7', data: 'while away' })
    const back = await openStream(t, server, '/dashboard?user=ann', { headers: { 'last-event-id': cursor } })
    await until(back, 'what it missed', () => back.events.length >= 2)
    t.same(back.events.map((event) => [event.event, event.data]), [['prices', 'while away'], ['room:7', 'while away']],
      'exactly what it missed, nothing twice, no missed event')

    // Unsubscribed: what is published after it resolved reaches none of the streams it was applied to.
    const left = await app.sse.tagged('user:ann').unsubscribe(room)
    t.same(left, { streams: 4, unanswered: [] }, 'three streams of before, and the one that came back')
    await room.publish({ event: 'room:7', data: 'after' })
    await app.sse.channel('prices').publish({ event: 'prices', data: 'after' })
    await Promise.all([ann[3], back].map(async (client) => await until(client, 'prices after', () =>
      client.events.some((event) => event.event === 'prices' && event.data === 'after'))))
    t.ok([...ann, back].every((client) => !roomEvents(client, 'room:7').includes('after')), 'the room no more')
    t.equal((await room.presence()).subscribers, 0)

    // Closed: each of ann's streams gets a retry: (from shutdownRetry), then ends; bob's stay open.
    const closed = await app.sse.tagged('user:ann').close()
    t.same(closed, { streams: 4, unanswered: [] })
    const annOpen = [ann[0], ann[1], ann[3], back]
    await Promise.all(annOpen.map(async (client) => await client.waitForEnd()))
    t.ok(annOpen.every((client) => client.retries.length === 1 && client.retries[0] >= 50 && client.retries[0] <= 60),
      'each was told to come back within the window')
    t.ok(bob.every((client) => !client.ended), 'bob\'s streams are open')
    t.equal(await app.sse.tagged('user:ann').count(), 0)
    t.equal(await app.sse.tagged('everyone').count(), 4)
    t.equal(app.sse.stats().streams.closed.FST_SSE_STREAM_ENDED, 4, 'counted as closed by the server')
    t.ok(bob.every((client) => client.events.every((event) => event.event !== MISSED_EVENT)))
  })
}

test('acting without waiting: a publish in the tick of the subscribe, a close in the tick of a publish', async (t) => {
  const memberships: Memberships = new Map()
  const server = await startServer(t, 'h2c', (app) => steeredRoutes(app, memberships))
  const { app } = server
  const clients = await Promise.all(KINDS.map(async (kind) => await openStream(t, server, `/${kind}?user=cy`)))
  const room = app.sse.channel('room:1')
  // Published while subscribe() is on its way: a stream may get it or not (it is owed what is published after
  // subscribe() resolved), never twice; and then the next.
  const subscribing = app.sse.tagged('user:cy').subscribe(room)
  const early = room.publish({ event: 'room:1', data: 'in the same tick' })
  await subscribing
  await early
  // Closed in the same tick as a publish: every stream gets the event before its end.
  const published = room.publish({ event: 'room:1', data: 'last' })
  const closing = app.sse.tagged('user:cy').close()
  await Promise.all([published, closing])
  await Promise.all(clients.map(async (client) => await client.waitForEnd()))
  for (const client of clients) {
    const got = roomEvents(client, 'room:1')
    t.ok(got.join() === 'in the same tick,last' || got.join() === 'last', `the last once, before the end, after the first if at all (${got.join()})`)
  }
})

test('tagged() filters are registered by name, and travel by it', async (t) => {
  const server = await startServer(t, 'h2c', (app) => steeredRoutes(app, new Map()))
  const { app } = server
  const big = app.sse.filter('big', (event) => (event.data as { n: number }).n > 10)
  t.throws(() => app.sse.filter('big', () => true), { code: 'FST_SSE_INVALID_OPTION' }, 'a name once')
  t.throws(() => app.sse.filter('', () => true), { code: 'FST_SSE_INVALID_OPTION' })
  t.throws(() => app.sse.filter('f', 42 as never), { code: 'FST_SSE_INVALID_OPTION' })
  const client = await openStream(t, server, '/push?user=dee')
  const room = app.sse.channel('numbers')
  await t.rejects(app.sse.tagged('user:dee').subscribe(room, { filter: () => true }), { code: 'FST_SSE_INVALID_OPTION' },
    'a function not registered cannot travel')
  await t.rejects(app.sse.tagged('user:dee').subscribe(room, { filtre: big } as never), { code: 'FST_SSE_INVALID_OPTION' })
  await t.rejects(app.sse.tagged('user:dee').subscribe(room, 'big' as never), { code: 'FST_SSE_INVALID_OPTION' })
  await t.rejects(app.sse.tagged('user:dee').subscribe({} as never), { code: 'FST_SSE_NOT_A_CHANNEL' })
  await t.rejects(app.sse.tagged('user:dee').unsubscribe('numbers' as never), { code: 'FST_SSE_NOT_A_CHANNEL' })
  t.throws(() => app.sse.tagged(''), { code: 'FST_SSE_INVALID_OPTION' })
  t.same(await app.sse.tagged('user:dee').subscribe(room, { filter: big }), { streams: 1, unanswered: [] })
  for (const n of [1, 20, 5, 30]) await room.publish({ event: 'n', data: { n } })
  await until(client, 'the big numbers', () => client.events.filter((event) => event.event === 'n').length === 2)
  t.same(client.events.filter((event) => event.event === 'n').map((event) => JSON.parse(event.data).n), [20, 30])
  t.same(await app.sse.tagged('user:nobody').subscribe(room, { filter: big }), { streams: 0, unanswered: [] })
  t.same(await app.sse.tagged('user:dee').unsubscribe(app.sse.channel('never-subscribed')), { streams: 0, unanswered: [] })
})

test('bad tags and expiresAt are refused with a clear error', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/tags', (request, reply) => reply.sse(undefined, { tags: JSON.parse((request.query as { tags: string }).tags) }))
    app.get('/expires', (request, reply) => reply.sse(undefined, { expiresAt: JSON.parse((request.query as { at: string }).at) }))
  })
  for (const tags of ['"user"', '[""]', '[1]', JSON.stringify(Array.from({ length: 65 }, (_, i) => `t${i}`)),
    JSON.stringify(['x'.repeat(257)])]) {
    const client = await openStream(t, server, `/tags?tags=${encodeURIComponent(tags)}`)
    t.equal(client.status, 500, `tags ${tags.slice(0, 20)} refused`)
  }
  for (const at of ['"tomorrow"', 'null', '{}']) {
    const client = await openStream(t, server, `/expires?at=${encodeURIComponent(at)}`)
    t.equal(client.status, 500, `expiresAt ${at} refused`)
  }
  t.equal(server.logs.records.filter((record) => record.err?.code === 'FST_SSE_INVALID_OPTION').length, 8)
  const empty = await openStream(t, server, '/tags?tags=[]')
  t.equal(empty.status, 200, 'no tags: a stream without')
})

test('expiresAt closes a stream then, with a retry:, as FST_SSE_EXPIRED; maxStreamAge closes every stream', async (t) => {
  const closes: StreamCloseMessage[] = []
  const onClose = (message: unknown): void => { closes.push(message as StreamCloseMessage) }
  subscribe('fastify-sse-h2:stream:close', onClose)
  t.teardown(() => unsubscribe('fastify-sse-h2:stream:close', onClose))
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/expires', (request, reply) => {
      const { at } = request.query as { at: string }
      reply.sse(undefined, { expiresAt: at.startsWith('d') ? new Date(Number(at.slice(1))) : Number(at), tags: ['exp'] })
    })
    app.get('/aged', { config: { sse: { maxStreamAge: 400 } } }, (request, reply) => reply.sse())
    app.get('/quiet', { config: { sse: { heartbeatInterval: 0, writeTimeout: 0, maxStreamAge: 300 } } }, (request, reply) => reply.sse())
    app.get('/both', { config: { sse: { maxStreamAge: 60_000 } } }, (request, reply) => {
      reply.sse(undefined, { expiresAt: Date.now() + 200 })
    })
  }, { plugin: { heartbeatInterval: 100, shutdownRetry: { min: 10, max: 20 } } })
  const { app } = server
  const opened = Date.now()
  const byNumber = await openStream(t, server, `/expires?at=${opened + 300}`)
  const byDate = await openStream(t, server, `/expires?at=d${opened + 300}`)
  const past = await openStream(t, server, `/expires?at=${opened - 60_000}`)
  const later = await openStream(t, server, `/expires?at=${opened + 60_000}`)
  const aged = await openStream(t, server, '/aged')
  const quiet = await openStream(t, server, '/quiet')
  const both = await openStream(t, server, '/both')
  await Promise.all([byNumber, byDate, past, aged, quiet, both].map(async (client) => await client.waitForEnd(5000)))
  const ended = Date.now() - opened
  t.ok(ended >= 360, `none closed before its time (the last after ${ended} ms)`)
  t.ok([byNumber, byDate, past, aged, quiet, both].every((client) => client.retries.at(-1) as number >= 10 &&
    (client.retries.at(-1) as number) <= 20), 'each told to come back, within shutdownRetry')
  t.notOk(later.ended, 'one that expires later is open')
  const closed = app.sse.stats().streams.closed
  t.equal(closed.FST_SSE_EXPIRED, 4, 'expiresAt: by number, by Date, in the past, and before maxStreamAge')
  t.equal(closed.FST_SSE_MAX_AGE, 2, 'maxStreamAge: with heartbeats, and without (a timer of its own)')
  t.same(closes.map((message) => message.code).sort(), [...Array(4).fill('FST_SSE_EXPIRED'), ...Array(2).fill('FST_SSE_MAX_AGE')].sort(),
    'told to diagnostics as every close is')
  t.equal(await app.sse.tagged('exp').count(), 1, 'the expired streams left their tags')
})

test('register refuses a bad maxStreamAge, and reply.sse() names where it is set', async (t) => {
  for (const maxStreamAge of [-1, 1.5, '1000']) {
    const app = Fastify()
    t.teardown(() => app.close())
    await t.rejects(async () => await app.register(sse, { maxStreamAge: maxStreamAge as number }), { code: 'FST_SSE_INVALID_OPTION' })
  }
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/here', (request, reply) => reply.sse(undefined, { maxStreamAge: 1000 } as never))
  })
  const client = await openStream(t, server, '/here')
  t.equal(client.status, 500)
  t.match(server.logs.records.find((record) => record.err?.code === 'FST_SSE_INVALID_OPTION')?.err?.message ?? '',
    /set in config\.sse of the route/)
})

test('two registrations given one store steer each other\'s streams', async (t) => {
  const store = new MemoryStore()
  let second!: FastifyInstance
  const server = await startServer(t, 'h2c', async (app) => {
    await app.register(async (one) => {
      await one.register(sse, { store })
      one.get('/one', (request, reply) => reply.sse(undefined, { tags: ['shared'] }))
    })
    await app.register(async (two) => {
      await two.register(sse, { store })
      two.get('/two', (request, reply) => reply.sse(undefined, { tags: ['shared'] }))
      second = two
    })
  }, { plugin: false })
  const clients = [await openStream(t, server, '/one'), await openStream(t, server, '/two'), await openStream(t, server, '/two')]
  t.equal(await second.sse.tagged('shared').count(), 3, 'counted in both')
  t.same(await second.sse.tagged('shared').close(), { streams: 3, unanswered: [] })
  await Promise.all(clients.map(async (client) => await client.waitForEnd()))
  t.pass('all of them closed')
})

test('app.sse.tagged() and app.sse.filter() where the plugin is not registered say so', async (t) => {
  const server = await startServer(t, 'h2c', async (app) => {
    await app.register(async (inner) => {
      await inner.register(sse)
    })
  }, { plugin: false })
  t.throws(() => server.app.sse.tagged('x'), { code: 'FST_SSE_NOT_REGISTERED' })
  t.throws(() => server.app.sse.filter('x', () => true), { code: 'FST_SSE_NOT_REGISTERED' })
})

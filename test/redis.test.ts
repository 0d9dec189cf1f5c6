import { test } from 'tap'
import { once } from 'node:events'
import { Redis } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import { startServer, type TestServer } from './helpers/server'
import { openStream, type SseClient } from './helpers/client'
import { eventually, startRedis, type RedisServer } from './helpers/redis'
import { missingService, mustSkip } from './helpers/services'
import { within } from './helpers/wait'
import { RedisStore, type RedisStoreOptions } from '../redis'
import { MISSED_EVENT } from '../index'
import { RedisKeys } from '../lib/stores/redis/keys'

const skip = mustSkip(missingService('redis-server'))

function routes (app: FastifyInstance): void {
  app.get('/news', (request, reply) => reply.sse(app.sse.channel('news')))
  app.get('/user/:name', (request, reply) => reply.sse(app.sse.channel('notes'), {
    filter: (event) => (event.data as { to: string }).to === (request.params as { name: string }).name
  }))
}

async function instance (t: Parameters<typeof startServer>[0], redis: RedisServer,
  options: RedisStoreOptions = {}, plugin: Record<string, unknown> = {}): Promise<TestServer> {
  return await startServer(t, 'h2c', routes, { plugin: { store: new RedisStore({ redis: redis.url, ...options }), ...plugin } })
}

function datas (client: SseClient): string[] {
  return client.events.filter((event) => event.event !== MISSED_EVENT).map((event) => event.data)
}

/** The clients connected to Redis under a name, per CLIENT LIST. */
async function namedConnections (redis: RedisServer, name: string): Promise<number> {
  const admin = new Redis(redis.url)
  try {
    const list = await admin.client('LIST') as string
    return list.split('\n').filter((line) => line.includes(` name=${name} `)).length
  } finally {
    admin.disconnect()
  }
}

test('redis store', { skip }, async (t) => {
  const redis = await startRedis(t)

  await t.test('a publish on one instance reaches the subscribers of every instance, in order', async (t) => {
    const a = await instance(t, redis)
    const b = await instance(t, redis)
    const onB = await Promise.all(Array.from({ length: 20 }, () => openStream(t, b, '/news')))
    const onA = await Promise.all(Array.from({ length: 5 }, () => openStream(t, a, '/news')))
    // The channel reads from Redis once it follows it: wait for that before publishing.
    await b.app.sse.channel('news').publish('warm-up')
    await Promise.all([...onA, ...onB].map((client) => client.waitForEvents(1)))
    const ids: string[] = []
    for (let i = 0; i < 50; i++) ids.push(await a.app.sse.channel('news').publish({ data: String(i) }))
    await Promise.all([...onA, ...onB].map((client) => client.waitForEvents(51)))
    const expected = ['warm-up', ...Array.from({ length: 50 }, (_, i) => String(i))].join()
    t.ok([...onA, ...onB].every((client) => datas(client).join() === expected), 'all of them, in order, once')
    t.ok(ids.every((id) => /^\d+-\d+$/.test(id)), 'ids are Redis stream entry ids')
    t.same(onB[0].events.slice(1).map((event) => event.id), ids)
    t.equal(await namedConnections(redis, 'fastify-sse-h2:live'), 2, 'one subscriber connection per instance')
  })

  await t.test('a client that reconnects to another instance gets exactly what it missed', async (t) => {
    const a = await instance(t, redis)
    const b = await instance(t, redis)
    const first = await openStream(t, a, '/news')
    await a.app.sse.channel('news').publish('warm-up')
    await first.waitForEvents(1)
    for (let i = 0; i < 3; i++) await a.app.sse.channel('news').publish(`seen ${i}`)
    await first.waitForEvents(4)
    const lastSeen = first.events[3].id as string
    first.close()
    for (let i = 0; i < 3; i++) await a.app.sse.channel('news').publish(`missed ${i}`)
    const back = await openStream(t, b, '/news', { headers: { 'last-event-id': lastSeen } })
    await back.waitForEvents(3)
    await b.app.sse.channel('news').publish('live')
    await back.waitForEvents(4)
    t.same(datas(back), ['missed 0', 'missed 1', 'missed 2', 'live'])
    const unknown = await openStream(t, b, '/news', { headers: { 'last-event-id': 'never-sent' } })
    await unknown.waitForEvents(1)
    t.equal(unknown.events[0].event, MISSED_EVENT, 'an id Redis never gave: the client is told it missed events')
    const own = await a.app.sse.channel('news').publish({ id: 'own-1', data: 'with my id' })
    t.equal(own, 'own-1')
    await a.app.sse.channel('news').publish('after own')
    const afterOwn = await openStream(t, b, '/news', { headers: { 'last-event-id': 'own-1' } })
    await afterOwn.waitForEvents(1)
    t.same(datas(afterOwn), ['after own'], 'a publisher-given id is found across instances')
  })

  await t.test('one subscriber connection serves many channels; a closed channel is no longer followed; history without an age limit', async (t) => {
    const store = new RedisStore({ redis: redis.url, historyMaxAge: 0 })
    const app = await startServer(t, 'h2c', (app) => {
      app.get('/:channel', (request, reply) => reply.sse(app.sse.channel((request.params as { channel: string }).channel)))
    }, { plugin: { store } })
    const clients = await Promise.all(['one', 'two', 'three'].map((name) => openStream(t, app, `/${name}`)))
    for (const name of ['one', 'two', 'three']) await app.app.sse.channel(name).publish(name)
    await Promise.all(clients.map((client) => client.waitForEvents(1)))
    t.same(clients.map((client) => client.events[0].data), ['one', 'two', 'three'])
    const first = clients[0].events[0].id as string
    app.app.sse.channel('one').close()
    await clients[0].waitForEnd()
    await app.app.sse.channel('two').publish('still read')
    await clients[1].waitForEvents(2)
    const again = await openStream(t, app, `/one?lastEventId=${first}`)
    await app.app.sse.channel('one').publish('after the channel was made again')
    await again.waitForEvents(1)
    t.same(datas(again), ['after the channel was made again'])
    store.unlisten('never-listened', () => {})
  })

  await t.test('filters see the event as published, also when it was published elsewhere', async (t) => {
    const a = await instance(t, redis)
    const b = await instance(t, redis)
    const ann = await openStream(t, b, '/user/ann')
    await b.app.sse.channel('notes').publish({ data: { to: 'ann', n: 0 } })
    await ann.waitForEvents(1)
    for (let n = 1; n <= 4; n++) await a.app.sse.channel('notes').publish({ data: { to: n % 2 === 0 ? 'ann' : 'bob', n } })
    await ann.waitForEvents(3)
    t.same(ann.events.map((event) => JSON.parse(event.data).n), [0, 2, 4])
  })

  await t.test('Redis going away and coming back: streams stay open, publishes fail fast, delivery resumes', async (t) => {
    const a = await instance(t, redis, { commandTimeout: 500 })
    // B's live check runs through the outage (every 50 ms): it fails, and says nothing.
    const b = await instance(t, redis, { liveCheckInterval: 50 }, { heartbeatInterval: 50 })
    const client = await openStream(t, b, '/news')
    // Published on b: b follows the channel before this publish is taken (same connection, in order).
    await b.app.sse.channel('news').publish('before')
    await client.waitForEvents(1)
    await redis.stop()
    await b.logs.waitFor((record) => record.level === 40 && /Redis is unreachable/.test(record.msg ?? ''), 'the outage warning')
    const started = Date.now()
    await t.rejects(a.app.sse.channel('news').publish('during'), { code: 'FST_SSE_STORE_UNAVAILABLE', statusCode: 503 })
    t.ok(Date.now() - started < 2000, 'the publish failed quickly, it did not hang')
    const beats = client.comments.length
    await client.waitForComments(beats + 5)
    t.equal(client.ended, false, 'the subscriber stays open, heartbeats go on')
    const arrivedDuring = await openStream(t, b, '/user/ann', { headers: { accept: '*/*' } })
    t.equal(arrivedDuring.status, 503, 'a new stream is refused while its store cannot say where it starts')
    t.ok(Number(arrivedDuring.headers['retry-after']) >= 1)
    await arrivedDuring.waitForEnd()
    t.match(JSON.parse(arrivedDuring.text), { code: 'FST_SSE_CHANNEL_UNAVAILABLE' })
    await redis.start()
    await b.logs.waitFor((record) => /Redis is back/.test(record.msg ?? ''), 'the recovery log', 20_000)
    // Until a's client has reconnected too, its publishes fail fast: retry until one is taken.
    let published = false
    while (!published) {
      published = await a.app.sse.channel('news').publish('after').then(() => true, async () => {
        await new Promise((resolve) => setTimeout(resolve, 100))
        return false
      })
    }
    await client.waitForEvents(2, 20_000)
    t.same(datas(client), ['before', 'after'], 'nothing published after the return was lost')
    const arrivedAfter = await openStream(t, b, '/user/ann')
    await a.app.sse.channel('notes').publish({ data: { to: 'ann' } })
    await arrivedAfter.waitForEvents(1, 20_000)
    t.pass('a subscriber that comes after the outage gets what is published after it')
  })

  await t.test('app.close() closes the connections the store made, not the client it was given', async (t) => {
    const own = await instance(t, redis)
    const given = new Redis(redis.url, { connectionName: 'user-client' })
    t.teardown(() => given.disconnect())
    const withClient = await startServer(t, 'h2c', routes, { plugin: { store: new RedisStore({ client: given }) } })
    const subscriber = await openStream(t, withClient, '/news')
    await withClient.app.sse.channel('news').publish('x')
    await subscriber.waitForEvents(1)
    await own.app.sse.channel('news').publish('y')
    const liveBefore = await namedConnections(redis, 'fastify-sse-h2:live')
    await within(own.app.close(), 'the first app to close')
    t.equal(await namedConnections(redis, 'fastify-sse-h2:live'), liveBefore, 'an instance that only publishes has no subscriber connection')
    await within(withClient.app.close(), 'the second app to close')
    t.equal(await namedConnections(redis, 'fastify-sse-h2:live'), liveBefore - 1, 'its subscriber connection is gone')
    t.equal(given.status, 'ready', 'the client it was given is still open')
    t.equal(await given.ping(), 'PONG')
    const closing = new Redis(redis.url)
    await closing.ping()
    const app = await startServer(t, 'h2c', routes, { plugin: { store: new RedisStore({ client: closing, closeClient: true }) } })
    const ended = once(closing, 'end')
    await app.app.close()
    await within(ended, 'closeClient: true to close the client it was given')
    const unreachable = new RedisStore({ redis: { port: 1, retryStrategy: () => null } })
    await unreachable.close()
    t.pass('a store that never connected closes at once')
  })

  await t.test('a client made with lazyConnect connects on the first publish', async (t) => {
    const lazy = new Redis(redis.url, { lazyConnect: true })
    t.teardown(() => lazy.disconnect())
    const app = await startServer(t, 'h2c', routes, { plugin: { store: new RedisStore({ client: lazy }) } })
    t.match(await app.app.sse.channel('lazy').publish('x'), /^\d+-\d+$/)
  })

  await t.test('Redis too busy to answer: the publish fails after commandTimeout', async (t) => {
    const app = await instance(t, redis, { commandTimeout: 200 })
    await app.app.sse.channel('busy').publish('warm')
    const admin = new Redis(redis.url)
    t.teardown(() => admin.disconnect())
    await admin.client('PAUSE', 1500, 'WRITE')
    await t.rejects(app.app.sse.channel('busy').publish('x'), {
      code: 'FST_SSE_STORE_TIMEOUT', statusCode: 504, message: /did not answer within commandTimeout \(200 ms\): the event may have been published/
    })
  })

  await t.test('a key of the prefix that is not a stream: the publish fails, the read failure is logged once', async (t) => {
    const admin = new Redis(redis.url)
    t.teardown(() => admin.disconnect())
    await admin.set(new RedisKeys('sse:', 16).stream('broken'), 'not a stream')
    const app = await startServer(t, 'h2c', (app) => {
      app.get('/broken', (request, reply) => reply.sse(app.sse.channel('broken')))
    }, { plugin: { store: new RedisStore({ redis: redis.url }) } })
    await t.rejects(app.app.sse.channel('broken').publish('x'), { code: 'FST_SSE_STORE_UNAVAILABLE', message: /WRONGTYPE/ })
    const refused = await openStream(t, app, '/broken', { headers: { accept: '*/*' } })
    t.equal(refused.status, 503, 'where a subscriber would start cannot be read either')
    await admin.del(new RedisKeys('sse:', 16).stream('broken'))
    await app.app.sse.channel('broken').publish('fixed')
  })
})

test('RedisStore options are checked', async (t) => {
  const bad: Array<[RedisStoreOptions, RegExp]> = [
    [{}, /option client must be given, or redis given, not both/],
    [{ redis: 'redis://x', client: {} as Redis }, /option client/],
    [{ redis: 'redis://127.0.0.1:1', historySize: 0 }, /historySize must be a whole number, 1 or more/],
    [{ redis: 'redis://127.0.0.1:1', historyMaxAge: -1 }, /historyMaxAge/],
    [{ redis: 'redis://127.0.0.1:1', commandTimeout: 0 }, /commandTimeout/],
    [{ redis: 'redis://127.0.0.1:1', prefix: 1 as unknown as string }, /prefix must be a string/]
  ]
  for (const [options, message] of bad) t.throws(() => new RedisStore(options), { code: 'FST_SSE_INVALID_OPTION', message })
})

test('app.close() while Redis is away resolves at once', { skip }, async (t) => {
  const redis = await startRedis(t)
  const server = await instance(t, redis)
  const client = await openStream(t, server, '/news')
  await server.app.sse.channel('news').publish('before')
  await client.waitForEvents(1)
  await redis.stop()
  await server.logs.waitFor((record) => /Redis is unreachable/.test(record.msg ?? ''), 'the outage warning')
  await within(server.app.close(), 'app.close() with the subscriber connection waiting for Redis', 5000)
  t.ok(client.ended || await client.waitForEnd().then(() => true), 'the subscriber was ended')
})

test('a RedisStore closed refuses what comes after at once, with a coded error', { skip }, async (t) => {
  const redis = await startRedis(t)
  const store = new RedisStore({ redis: `redis://127.0.0.1:${redis.port}` })
  await store.append('news', { id: undefined, body: 'data: before\n', snapshot: '{"data":"before"}' })
  await store.close()
  await t.rejects(within(Promise.resolve(store.append('news', { id: undefined, body: 'data: after\n', snapshot: '{"data":"after"}' })), 'the refusal'),
    { code: 'FST_SSE_STORE_UNAVAILABLE', message: /the store is closed/ })
})

test('a channel route whose header Node refuses, answered once Redis said where it starts: an error response, not a hang', { skip }, async (t) => {
  const redis = await startRedis(t)
  // A name Node's http2 refuses (an unknown pseudo-header), and a value its http refuses.
  const bad = { h2c: [':bad', 'x'], http1: ['x-bad', 'a\nb'] } as const
  for (const protocol of ['h2c', 'http1'] as const) {
    const server = await startServer(t, protocol, (app) => {
      app.get('/news', (request, reply) => reply.header(bad[protocol][0], bad[protocol][1]).sse(app.sse.channel('news')))
      app.get('/fine', (request, reply) => reply.sse(app.sse.channel('news')))
    }, { plugin: { store: new RedisStore({ redis: redis.url }) } })
    const refused = await openStream(t, server, '/news')
    t.equal(refused.status, 500, `${protocol}: the error handler answered`)
    const fine = await openStream(t, server, '/fine')
    await server.app.sse.channel('news').publish('still served')
    await fine.waitForEvents(1)
    t.same(datas(fine), ['still served'])
  }
})

test('a RedisStore closed while it still follows channels lets go of them: their listeners get nothing more', { skip }, async (t) => {
  const redis = await startRedis(t)
  const store = new RedisStore({ redis: redis.url })
  const other = new RedisStore({ redis: redis.url })
  t.teardown(() => other.close())
  const heard: string[] = []
  store.listen('news', (event) => heard.push(String(event.event.data)))
  await store.append('news', { id: undefined, body: 'data: first\n\n', snapshot: '{"data":"first"}' })
  await within((async () => { while (heard.length === 0) await new Promise((resolve) => setTimeout(resolve, 10)) })(), 'the first event to be read')
  await within(store.close(), 'close() with a channel followed')
  await other.append('news', { id: undefined, body: 'data: after\n\n', snapshot: '{"data":"after"}' })
  const replay = await other.readAfter('news', 'none')
  t.same(replay.events.map((event) => event.event.data), ['first', 'after'], 'the other store goes on')
  t.same(heard, ['first'], 'nothing after close()')
})

test('a client with a keyPrefix: the live path and the live check find the channels under it', { skip }, async (t) => {
  const redis = await startRedis(t)
  const clients = [0, 1].map(() => new Redis(redis.url, { keyPrefix: 'tenant:' }))
  t.teardown(() => { for (const client of clients) client.disconnect() })
  const [follower, publisher] = clients.map((client) => new RedisStore({ client, liveCheckInterval: 50 }))
  t.teardown(async () => { await Promise.all([follower.close(), publisher.close()]) })
  const heard: unknown[] = []
  follower.listen('news', (event) => heard.push(event.event.data))
  await follower.head('news')
  await publisher.append('news', { id: undefined, body: 'data: live\n\n', snapshot: '{"data":"live"}' })
  await eventually(() => heard.length === 1, 'the live event')
  const admin = new Redis(redis.url)
  t.teardown(() => admin.disconnect())
  await admin.xadd('tenant:' + new RedisKeys('sse:', 16).stream('news'), '*', 't', 'data: unannounced\n\n')
  await eventually(() => heard.length === 2, 'the entry no message announced')
  t.same(heard, ['live', 'unannounced'])
})

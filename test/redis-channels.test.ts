import { test } from 'tap'
import { EventEmitter } from 'node:events'
import { Redis } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import { startServer, type TestServer } from './helpers/server'
import { connectSession, openStream } from './helpers/client'
import { eventually, startRedis, type RedisServer } from './helpers/redis'
import { missingService, mustSkip } from './helpers/services'
import { ERROR } from './helpers/logs'
import { RedisStore, type RedisStoreOptions } from '../redis'
import { MISSED_EVENT } from '../index'
import { RedisKeys } from '../lib/stores/redis/keys'
import { REPLAY_PAGE } from '../lib/stores/redis/replays'

const skip = mustSkip(missingService('redis-server'))
const keys = new RedisKeys('sse:', 16)

function routes (app: FastifyInstance): void {
  app.get('/:channel', (request, reply) => reply.sse(app.sse.channel((request.params as { channel: string }).channel)))
  app.get('/typed/:channel', (request, reply) => reply.sse(app.sse.channel((request.params as { channel: string }).channel, {
    schema: { type: 'object', properties: { n: { type: 'number' } } }
  })))
}

async function instance (t: Parameters<typeof startServer>[0], redis: RedisServer, options: RedisStoreOptions = {}): Promise<TestServer & { store: RedisStore }> {
  const store = new RedisStore({ redis: redis.url, ...options })
  return { ...await startServer(t, 'h2c', routes, { plugin: { store } }), store }
}

/** Every command Redis runs, as MONITOR shows it, from the moment this returns. */
async function monitor (t: { teardown: (fn: () => unknown) => void }, redis: RedisServer): Promise<{ commands: string[][], seen: EventEmitter }> {
  const admin = new Redis(redis.url)
  const watching = await admin.monitor()
  t.teardown(() => { watching.disconnect(); admin.disconnect() })
  const commands: string[][] = []
  const seen = new EventEmitter()
  watching.on('monitor', (_time: string, args: string[]) => {
    commands.push(args)
    seen.emit('change')
  })
  return { commands, seen }
}

async function connections (redis: RedisServer, name: string): Promise<number> {
  const admin = new Redis(redis.url)
  try {
    return (await admin.client('LIST') as string).split('\n').filter((line) => line.includes(` name=${name} `)).length
  } finally {
    admin.disconnect()
  }
}

/** The channels of the stores' prefix some connection is subscribed to, as Redis says (PUBSUB CHANNELS). */
async function subscribedChannels (redis: RedisServer): Promise<string[]> {
  const admin = new Redis(redis.url)
  try {
    return (await admin.pubsub('CHANNELS', 'sse:*') as string[]).sort()
  } finally {
    admin.disconnect()
  }
}

test('a process subscribes only to the channels it has subscribers for', { skip }, async (t) => {
  const redis = await startRedis(t)

  await t.test('released when the last subscriber leaves, followed again when one comes; a publisher alone subscribes to nothing', async (t) => {
    const publisher = await instance(t, redis)
    const app = await instance(t, redis)
    const onA = await openStream(t, app, '/a')
    const onB = await openStream(t, app, '/b')
    await publisher.app.sse.channel('a').publish('1')
    await publisher.app.sse.channel('b').publish('1')
    await Promise.all([onA.waitForEvents(1), onB.waitForEvents(1)])
    t.same(await subscribedChannels(redis), [keys.stream('a'), keys.stream('b')].sort(), 'one subscription per channel, named as its stream')
    t.equal(await connections(redis, 'fastify-sse-h2:live'), 1, 'both on one connection')
    onA.close()
    await eventually(async () => (await subscribedChannels(redis)).join() === keys.stream('b'), 'a to be let go of')
    await publisher.app.sse.channel('b').publish('2')
    await onB.waitForEvents(2)
    const again = await openStream(t, app, '/a')
    const [id] = [await publisher.app.sse.channel('a').publish('after it came back')]
    await again.waitForEvents(1)
    t.same(again.events.map((event) => event.id), [id], 'followed again from where it stands now')
    again.close()
    onB.close()
    await eventually(async () => await connections(redis, 'fastify-sse-h2:live') === 0, 'the subscriber connection to close')
    t.same(await subscribedChannels(redis), [], 'no channel followed: no subscription, no subscriber connection')
    await publisher.app.sse.channel('a').publish('nobody here')
    t.equal(await connections(redis, 'fastify-sse-h2:live'), 0, 'publishing starts no subscriber connection')
  })

  await t.test('5,000 one-off channels: each followed while it has a subscriber, nothing left of them after', async (t) => {
    const app = await instance(t, redis)
    const publisher = await instance(t, redis)
    for (let batch = 0; batch < 50; batch++) {
      const names = Array.from({ length: 100 }, (_, i) => `one-off-${batch}-${i}`)
      // A connection a batch, which the client then drops: resetting thousands of streams on one session would have
      // Node end it (its defence against rapid resets).
      const session = await connectSession(t, app)
      const clients = await Promise.all(names.map(async (name) => await openStream(t, app, `/${name}`, { session })))
      await publisher.app.sse.channel(names[0]).publish('x')
      await clients[0].waitForEvents(1)
      session.destroy()
    }
    const store = app.store as unknown as { follows: Map<string, unknown>, feed: { empty: boolean } }
    await eventually(() => store.follows.size === 0, 'every channel released')
    t.equal(store.follows.size, 0, 'the store keeps nothing of them')
    t.ok(store.feed.empty, 'and has no subscriber connection')
    t.same(await subscribedChannels(redis), [], 'nor any subscription')
  })
})

test('one channel Redis refuses to read does not stop the others', { skip }, async (t) => {
  const redis = await startRedis(t)
  const admin = new Redis(redis.url)
  t.teardown(() => admin.disconnect())
  const app = await instance(t, redis, { liveCheckInterval: 50 })
  const good = await openStream(t, app, '/good')
  const bad = await openStream(t, app, '/bad')
  await app.app.sse.channel('bad').publish('before')
  await bad.waitForEvents(1)
  // Its key is replaced by one that is not a stream while it is followed: the live check's read of it fails.
  await admin.del(keys.stream('bad'))
  await admin.set(keys.stream('bad'), 'not a stream')
  const logged = await app.logs.waitFor((record) => record.level === ERROR && record.channel === 'bad', 'the failing channel')
  t.match(logged, { msg: /reading a channel from Redis failed/, err: { message: /WRONGTYPE/ } })
  for (let i = 1; i <= 5; i++) await app.app.sse.channel('good').publish(String(i))
  await good.waitForEvents(5)
  t.same(good.events.map((event) => event.data), ['1', '2', '3', '4', '5'], 'the other channel goes on')
  // A few live checks more: it is read again each time, and said once.
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.equal(app.logs.records.filter((record) => record.channel === 'bad' && record.level === ERROR).length, 1, 'said once')
  await admin.del(keys.stream('bad'))
  await app.app.sse.channel('bad').publish('fixed')
  await bad.waitForEvents(2)
  t.same(bad.events.map((event) => event.data), ['before', 'fixed'], 'read again once it is a stream again')
  await app.logs.waitFor((record) => /can be read from Redis again/.test(record.msg ?? ''), 'the recovery')
})

test('replays', { skip }, async (t) => {
  const redis = await startRedis(t)

  await t.test('cost what was missed: read from the client\'s position, in pages', async (t) => {
    const a = await instance(t, redis)
    const b = await instance(t, redis)
    const news = a.app.sse.channel('paged')
    const ids: string[] = []
    for (let i = 0; i < 1000; i += 100) {
      ids.push(...await Promise.all(Array.from({ length: 100 }, async (_, j) => await news.publish(String(i + j)))))
    }
    const { commands } = await monitor(t, redis)
    const recent = await openStream(t, b, '/paged', { headers: { 'last-event-id': ids[994] } })
    await recent.waitForEvents(5)
    t.same(recent.events.map((event) => event.data), ['995', '996', '997', '998', '999'])
    // Replay pages, not the live path's reads (which read fewer entries at once).
    const pages = (): number => commands.filter((command) => command[0].toLowerCase() === 'xrange' && command[2].startsWith('(') &&
      command[5] === String(REPLAY_PAGE)).length
    t.equal(pages(), 1, 'five missed events: the script\'s one page')
    t.ok(commands.some((command) => command[0].toLowerCase() === 'xrange' && command[2] === `(${ids[994]}` && command[5] === String(REPLAY_PAGE)),
      'from the client\'s position, a page at most')
    const all = await openStream(t, b, '/paged', { headers: { 'last-event-id': ids[0] } })
    await all.waitForEvents(999)
    t.same(all.events.map((event) => Number(event.data)), Array.from({ length: 999 }, (_, i) => i + 1), 'exactly, across pages')
    t.equal(pages(), 1 + Math.ceil(999 / REPLAY_PAGE), `999 missed events: pages of ${REPLAY_PAGE}`)
  })

  await t.test('identical replays asked together share a read; each client gets them once', async (t) => {
    const a = await instance(t, redis)
    const b = await instance(t, redis)
    const ids = await Promise.all(Array.from({ length: 50 }, async (_, i) => await a.app.sse.channel('shared').publish(String(i))))
    const { commands } = await monitor(t, redis)
    const sessions = await Promise.all([0, 1, 2, 3].map(async () => await connectSession(t, b)))
    const clients = await Promise.all(Array.from({ length: 400 }, async (_, i) =>
      await openStream(t, b, '/shared', { session: sessions[i % 4], headers: { 'last-event-id': ids[9] } })))
    await Promise.all(clients.map(async (client) => await client.waitForEvents(40)))
    t.ok(clients.every((client) => client.events.map((event) => event.data).join() === ids.slice(10).map((_, i) => String(i + 10)).join()))
    const reads = commands.filter((command) => command[0].toLowerCase() === 'evalsha' && command.includes(ids[9])).length
    t.ok(reads < 40, `400 replays of the same id, ${reads} reads`)
  })

  await t.test('publisher-given ids: found across instances, the newest of a repeated one, missed once trimmed', async (t) => {
    const a = await instance(t, redis, { historySize: 1 })
    const b = await instance(t, redis, { historySize: 1 })
    const channel = a.app.sse.channel('own')
    await channel.publish({ id: 'mine', data: 'first' })
    await channel.publish({ id: '5-1', data: 'an own id that looks like a position' })
    await channel.publish('after')
    const after5 = await openStream(t, b, '/own', { headers: { 'last-event-id': '5-1' } })
    await after5.waitForEvents(1)
    t.same(after5.events.map((event) => event.data), ['after'])
    await channel.publish({ id: 'mine', data: 'again' })
    await channel.publish('last')
    const afterMine = await openStream(t, b, '/own', { headers: { 'last-event-id': 'mine' } })
    await afterMine.waitForEvents(1)
    t.same(afterMine.events.map((event) => event.data), ['last'], 'the newest event with that id')
    // historySize 1: Redis trims by whole nodes of 100 entries, so a few hundred push the first ones out.
    for (let i = 0; i < 300; i += 100) await Promise.all(Array.from({ length: 100 }, async (_, j) => await channel.publish(String(i + j))))
    const trimmed = await openStream(t, b, '/own', { headers: { 'last-event-id': 'mine' } })
    await trimmed.waitForEvents(1)
    t.equal(trimmed.events[0].event, MISSED_EVENT)
    const admin = new Redis(redis.url)
    t.teardown(() => admin.disconnect())
    t.equal(await admin.zscore(keys.ownIds('own'), 'mine'), null, 'own ids go with their events')
  })
})

test('what Redis keeps: each event once, trimmed by age on Redis\'s clock, keys that expire', { skip }, async (t) => {
  const redis = await startRedis(t)
  const admin = new Redis(redis.url)
  t.teardown(() => admin.disconnect())

  await t.test('an event is one field: its frame; the snapshot only when the frame does not say it', async (t) => {
    const app = await instance(t, redis)
    const filtered = await startServer(t, 'h2c', (server) => {
      server.get('/', (request, reply) => reply.sse(server.sse.channel('kept'), { filter: (event) => event.event !== 'skip' }))
    }, { plugin: { store: new RedisStore({ redis: redis.url }) } })
    const client = await openStream(t, filtered, '/')
    const channel = app.app.sse.channel('kept')
    const typed = app.app.sse.channel('kept-typed', { schema: { type: 'object', properties: { n: { type: 'number' } } } })
    await channel.publish({ data: { to: 'ann', list: [1, 2] } })
    await channel.publish({ event: 'note', data: 'a string', comment: 'two\nlines', retry: 10, id: 'mine' })
    await channel.publish({ data: 'line one\r\nline two' })
    await channel.publish({ data: Buffer.from('bytes') })
    await channel.publish({ event: 'skip', data: 'filtered out' })
    await typed.publish({ data: { n: 1, dropped: true } })
    const entries = await admin.xrange(keys.stream('kept'), '-', '+')
    t.same(entries.map(([, fields]) => fields.filter((_, i) => i % 2 === 0)), [['j'], ['i', 't'], ['b', 'e'], ['t'], ['t']])
    const [[, typedFields]] = await admin.xrange(keys.stream('kept-typed'), '-', '+')
    t.same(typedFields.filter((_, i) => i % 2 === 0), ['b', 'e'], 'a schema that drops fields: the snapshot apart')
    await client.waitForEvents(4)
    t.same(client.events.map((event) => event.data), ['{"to":"ann","list":[1,2]}', 'a string', 'line one\nline two', 'Ynl0ZXM='])
    const replay = await app.store.readAfter('kept', 'never-sent')
    t.same(replay.events.map((event) => event.event), [
      { data: { to: 'ann', list: [1, 2] }, id: entries[0][0] },
      { event: 'note', retry: 10, comment: 'two\nlines', data: 'a string', id: 'mine' },
      { data: 'line one\r\nline two', id: entries[2][0] },
      { data: 'Ynl0ZXM=', id: entries[3][0] },
      { event: 'skip', data: 'filtered out', id: entries[4][0] }
    ], 'filters see each event as it was published')
  })

  await t.test('historyMaxAge by Redis\'s clock: an instance whose clock is an hour off replays the same', async (t) => {
    const app = await instance(t, redis, { historyMaxAge: 60_000 })
    const id = await app.app.sse.channel('clock').publish('1')
    await app.app.sse.channel('clock').publish('2')
    const now = Date.now
    Date.now = () => now() + 3_600_000
    try {
      const replay = await app.store.readAfter('clock', id)
      t.same(replay.events.map((event) => event.frame.slice(-2 - 1, -2)), ['2'], 'not too old by its own clock')
    } finally {
      Date.now = now
    }
  })

  await t.test('events older than historyMaxAge are not replayed, are trimmed, and the keys expire with them', async (t) => {
    const app = await instance(t, redis, { historyMaxAge: 400 })
    const channel = app.app.sse.channel('aging')
    const old = await Promise.all(Array.from({ length: 150 }, async (_, i) => await channel.publish(String(i))))
    const ttl = await admin.pttl(keys.stream('aging'))
    t.ok(ttl > 0 && ttl <= 400, `the stream expires historyMaxAge after its last event (${ttl} ms)`)
    // The subject is age: 400 ms must pass.
    await new Promise((resolve) => setTimeout(resolve, 500))
    const young = await channel.publish('young')
    t.ok(await admin.xlen(keys.stream('aging')) < 150, 'trimmed by MINID')
    const replay = await app.store.readAfter('aging', old[149])
    t.same({ found: replay.found, ids: replay.events.map((event) => event.id) }, { found: false, ids: [young] },
      'an id older than historyMaxAge is no longer retained; what is younger is')
    await channel.publish({ id: 'own', data: 'x' })
    t.ok(await admin.pttl(keys.ownIds('aging')) > 0, 'own ids expire too')
    await eventually(async () => await admin.exists(keys.stream('aging'), keys.ownIds('aging')) === 0, 'the keys of an idle channel to expire')
    t.pass('an idle channel leaves nothing in Redis')
    const forever = await instance(t, redis, { historyMaxAge: 0 })
    await forever.app.sse.channel('forever').publish('x')
    t.equal(await admin.pttl(keys.stream('forever')), -1, 'historyMaxAge: 0 keeps history without an age limit')
  })
})

test('RedisStore shards are checked', async (t) => {
  for (const shards of [0, 1025, 1.5]) {
    t.throws(() => new RedisStore({ redis: 'redis://127.0.0.1:1', shards }), { code: 'FST_SSE_INVALID_OPTION', message: /shards must be a whole number from 1 to 1024/ })
  }
})

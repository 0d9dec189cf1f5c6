import { t as root, test } from 'tap'
import { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import { openStream, type SseClient } from './helpers/client'
import { eventually, startRedis, type RedisServer } from './helpers/redis'
import { startInstance, type InstanceProcess } from './helpers/redis-instances'
import { missingService, mustSkip } from './helpers/services'
import { RedisProxy } from './helpers/redis-proxy'
import { startServer } from './helpers/server'
import { waitUntil } from './helpers/wait'
import { ERROR } from './helpers/logs'
import { MISSED_EVENT } from '../index'
import { RedisStore } from '../redis'
import { RedisKeys } from '../lib/stores/redis/keys'

// Instance processes to start, a few times: on a loaded 2-core machine this file may take longer than tap's 120 s.
root.setTimeout(300_000)

// The live path's failure modes, with instances as processes of their own on one real redis-server. Their live check
// is off (an hour apart), unless a test is about it: what pub/sub loses must come back by the path under test.

const skip = mustSkip(missingService('redis-server'))
const keys = new RedisKeys('sse:', 16)
const NO_LIVE_CHECK = { liveCheckInterval: 3_600_000 }

async function admin (t: { teardown: (fn: () => unknown) => void }, redis: RedisServer): Promise<Redis> {
  const client = new Redis(redis.url)
  t.teardown(() => client.disconnect())
  return client
}

/** The ids of the subscriber connections Redis has (CLIENT LIST, by name), those subscribed to `channels` at least. */
async function liveConnections (client: Redis, channels = 0): Promise<string[]> {
  const list = await client.client('LIST') as string
  return list.split('\n').filter((line) => line.includes(' name=fastify-sse-h2:live ') && Number(/ sub=(\d+)/.exec(line)?.[1]) >= channels)
    .map((line) => /id=(\d+)/.exec(line)?.[1] as string)
}

/** Waits until the client has the event with id `last`, then gives the ids it has, `missed` events as `missed`. */
async function idsUntil (client: SseClient, last: string, what: string): Promise<string[]> {
  await waitUntil(client, 'change', () => client.events.some((event) => event.id === last) ? true : undefined, what, 20_000)
  return client.events.map((event) => event.event === MISSED_EVENT ? MISSED_EVENT : event.id as string)
}

async function instances (t: Parameters<typeof startInstance>[0], redis: RedisServer, store: object = NO_LIVE_CHECK): Promise<InstanceProcess[]> {
  return await Promise.all([0, 1].map(async () => await startInstance(t, { protocol: 'h2c', redis: redis.url, store })))
}

test('the subscriber connection killed mid-publish across many channels: every event arrives once, in order', { skip }, async (t) => {
  const redis = await startRedis(t)
  const redisAdmin = await admin(t, redis)
  const [a, b] = await instances(t, redis)
  const names = Array.from({ length: 20 }, (_, i) => `killed-${i}`)
  const clients = await Promise.all(names.map(async (name) => await openStream(t, b.server, `/channels/${name}`)))
  const quiet = await openStream(t, b.server, '/channels/quiet')
  // 20 channels at 40 events a second each, published by A while B's subscriber connection is killed three times.
  const publishing = Promise.all(names.map(async (name) => await a.steady(name, 60, 40, '')))
  for (let kill = 1; kill <= 3; kill++) {
    await clients[0].waitForEvents(kill * 12)
    await redisAdmin.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
  }
  const published = await publishing
  t.same(published.flatMap(({ failures }) => failures), [], 'every publish was taken')
  // A quiet channel whose last event falls in the outage: only the read on after the reconnect can bring it.
  const quietIds: string[] = []
  let fellInOutage = false
  for (let attempt = 0; attempt < 20 && !fellInOutage; attempt++) {
    await eventually(async () => (await liveConnections(redisAdmin)).length === 1, 'the subscriber connection to be back')
    await redisAdmin.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
    quietIds.push(...await a.publish('quiet', [`last ${attempt}`]))
    fellInOutage = (await liveConnections(redisAdmin)).length === 0
  }
  t.ok(fellInOutage, 'a last event was published while B had no subscriber connection')
  t.same(await idsUntil(quiet, quietIds[quietIds.length - 1], 'the quiet channel\'s last event'), quietIds, 'the quiet channel: each event once, in order')
  for (const [i, client] of clients.entries()) {
    const ids = published[i].ids as string[]
    t.same(await idsUntil(client, ids[ids.length - 1], `the last event of ${names[i]}`), ids, `${names[i]}: every event once, in order`)
  }
})

test('a channel\'s first subscriber arrives while another instance publishes to it: from its stream\'s answer on, nothing is lost', { skip }, async (t) => {
  const redis = await startRedis(t)
  const redisAdmin = await admin(t, redis)
  const [a, b] = await instances(t, redis)
  for (let i = 0; i < 5; i++) {
    const name = `arriving-${i}`
    const publishing = a.steady(name, 120, 200, '')
    // Once some are published, the first subscriber of B arrives: B subscribes and reads where the channel stands.
    await eventually(async () => await redisAdmin.xlen(keys.stream(name)) >= 20, 'publishing to be under way')
    const client = await openStream(t, b.server, `/channels/${name}`)
    const { ids, failures } = await publishing
    t.same(failures, [])
    const got = await idsUntil(client, ids[ids.length - 1] as string, 'the last event')
    const from = ids.indexOf(got[0])
    t.ok(from > 0, `${name}: it started where the channel stood (after ${from} events)`)
    t.same(got, ids.slice(from), `${name}: every event after that, once, in order`)
  }
})

test('an entry with no live message (an instance of an earlier version wrote it) is read in order, and a quiet one by the live check', { skip }, async (t) => {
  const redis = await startRedis(t)
  const redisAdmin = await admin(t, redis)
  const [a, b] = await instances(t, redis, { liveCheckInterval: 100 })
  const client = await openStream(t, b.server, '/channels/old-writer')
  const [first] = await a.publish('old-writer', ['1'])
  await client.waitForEvents(1)
  // As the append script of the XREAD design: the entry, no message.
  const silent = await redisAdmin.xadd(keys.stream('old-writer'), '*', 't', 'data: 2\n\n') as string
  const rest = await a.publish('old-writer', ['3', '4', '5'])
  t.same(await idsUntil(client, rest[2], 'the last event'), [first, silent, ...rest], 'read at the next message, in its place')
  const last = await redisAdmin.xadd(keys.stream('old-writer'), '*', 't', 'data: 6\n\n') as string
  t.same(await idsUntil(client, last, 'the entry no message announced'), [first, silent, ...rest, last],
    'the last one, by the live check (every 100 ms here)')
  t.same(client.events.map((event) => event.data), ['1', '2', '3', '4', '5', '6'])
})

test('a gap beyond the history gives missed, then what is retained, in order', { skip }, async (t) => {
  const redis = await startRedis(t)
  const redisAdmin = await admin(t, redis)
  const store = { ...NO_LIVE_CHECK, historySize: 100 }
  const [a, b] = await instances(t, redis, store)
  const client = await openStream(t, b.server, '/channels/trimmed')
  const [before] = await a.publish('trimmed', ['before'])
  await client.waitForEvents(1)
  // B stalls and loses its subscriber connection; meanwhile 300 events are published, and the history keeps about 100
  // (XADD MAXLEN ~ trims whole nodes of 100 entries).
  await eventually(async () => (await liveConnections(redisAdmin, 1)).length === 1, 'B to be subscribed')
  const [live] = await liveConnections(redisAdmin)
  b.signal('SIGSTOP')
  await redisAdmin.client('KILL', 'ID', live)
  const missedOnes: string[] = []
  for (let i = 0; i < 300; i += 100) missedOnes.push(...await a.publish('trimmed', Array.from({ length: 100 }, (_, j) => String(i + j))))
  const retained = (await redisAdmin.xrange(keys.stream('trimmed'), '-', '+')).map(([id]) => id)
  t.ok(retained.length < 300 && retained[0] !== missedOnes[0], `trimmed: ${retained.length} of 300 retained`)
  b.signal('SIGCONT')
  const ids = await idsUntil(client, missedOnes[299], 'the last event')
  t.same(ids, [before, MISSED_EVENT, ...retained], 'the missed event, then every event retained, once, in order')
  t.same(JSON.parse(client.events[1].data), { channel: 'trimmed', oldestId: retained[0] }, 'as a replay says it')
  const [after] = await a.publish('trimmed', ['after'])
  t.same(await idsUntil(client, after, 'the next event'), [...ids, after], 'then live again')
})

test('an instance stalled past Redis\'s pub/sub output limit is let go of by Redis, and loses nothing', { skip }, async (t) => {
  const redis = await startRedis(t)
  const redisAdmin = await admin(t, redis)
  // A limit a stalled subscriber reaches in a few hundred events (the default is 32 MB, or 8 MB for 60 s).
  await redisAdmin.config('SET', 'client-output-buffer-limit', 'pubsub 64kb 32kb 1')
  const [a, b] = await instances(t, redis, { ...NO_LIVE_CHECK, historySize: 100_000 })
  const names = ['stalled-0', 'stalled-1', 'stalled-2']
  const clients = await Promise.all(names.map(async (name) => await openStream(t, b.server, `/channels/${name}`)))
  // Large events on a channel of its own fill Redis's buffer for B (their subscriber is dropped as slow once B writes
  // them, a few hundred KB at once); the channels checked get small ones.
  await openStream(t, b.server, '/channels/ballast')
  // A stream is answered once B knows where its channel stands; its subscription may take effect a moment later.
  await eventually(async () => (await liveConnections(redisAdmin, names.length + 1)).length === 1, 'B to be subscribed')
  const [live] = await liveConnections(redisAdmin)
  b.signal('SIGSTOP')
  // Published until Redis gives up on the stalled connection: the kernel's socket buffers take a few MB first.
  const ballast = 'x'.repeat(16_384)
  const published: string[][] = names.map(() => [])
  let closed = false
  for (let round = 0; round < 50 && !closed; round++) {
    await Promise.all([
      a.publish('ballast', Array.from({ length: 50 }, () => ballast)),
      ...names.map(async (name, i) => published[i].push(...await a.publish(name, Array.from({ length: 10 }, (_, j) => `${round}.${j}`))))
    ])
    closed = !(await liveConnections(redisAdmin)).includes(live)
  }
  t.ok(closed, `Redis closed the subscriber connection of the stalled instance (after ${published[0].length} events a channel)`)
  b.signal('SIGCONT')
  for (const [i, client] of clients.entries()) {
    const ids = published[i]
    t.same(await idsUntil(client, ids[ids.length - 1], `the last event of ${names[i]}`), ids, `${names[i]}: all of them, once, in order`)
  }
  t.not((await liveConnections(redisAdmin))[0], live, 'on a new subscriber connection')
})

test('Redis restarted without persistence: what is published after is delivered, and nothing is taken for a gap', { skip }, async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await instances(t, redis)
  const client = await openStream(t, b.server, '/channels/restarted')
  const before = await a.publish('restarted', ['1', '2', '3'])
  await client.waitForEvents(3)
  await redis.stop()
  await redis.start()
  // Until A's connection is back, a publish fails at once: asked again until one is taken.
  let first: string[] = []
  await eventually(async () => {
    first = await a.publish('restarted', ['4']).catch(() => [])
    return first.length > 0
  }, 'a publish to be taken')
  const after = [...first, ...await a.publish('restarted', ['5', '6'])]
  t.same(await idsUntil(client, after[2], 'the last event'), [...before, ...after], 'no missed event, no repeat')
  t.same(client.events.map((event) => event.data), ['1', '2', '3', '4', '5', '6'])
})

test('a subscriber connection that dies without a word: the live check finds it, makes it again, and what it missed arrives', { skip }, async (t) => {
  const redis = await startRedis(t)
  const redisAdmin = await admin(t, redis)
  const proxy = await RedisProxy.start(t, redis.port)
  const a = await startInstance(t, { protocol: 'h2c', redis: redis.url })
  // B reaches Redis through the proxy; it checks its subscriber connection every 100 ms, and waits 300 ms for it.
  const b = await startInstance(t, { protocol: 'h2c', redis: proxy.url, store: { liveCheckInterval: 100, commandTimeout: 300 } })
  const client = await openStream(t, b.server, '/channels/cut')
  const [first] = await a.publish('cut', ['before'])
  await client.waitForEvents(1)
  const list = await redisAdmin.client('LIST') as string
  const line = list.split('\n').find((entry) => entry.includes(' name=fastify-sse-h2:live ')) as string
  t.ok(proxy.freeze(/ addr=(\S+)/.exec(line)?.[1] as string), 'B\'s subscriber connection is cut, without a word to either side')
  const [during] = await a.publish('cut', ['during'])
  t.same(await idsUntil(client, during, 'the event published on the cut connection'), [first, during])
  const cut = /id=(\d+)/.exec(line)?.[1] as string
  await eventually(async () => {
    const live = await liveConnections(redisAdmin, 1)
    return live.length === 1 && !live.includes(cut)
  }, 'B to let go of the cut connection and subscribe on a new one')
  const [after] = await a.publish('cut', ['after'])
  t.same(await idsUntil(client, after, 'the next event'), [first, during, after], 'live again')
})

test('a read on Redis does not answer is asked again until it does; a channel let go of meanwhile is not', { skip }, async (t) => {
  const redis = await startRedis(t)
  const redisAdmin = await admin(t, redis)
  const a = await startInstance(t, { protocol: 'h2c', redis: redis.url })
  const b = await startInstance(t, { protocol: 'h2c', redis: redis.url, store: { ...NO_LIVE_CHECK, commandTimeout: 500 } })
  const kept = await openStream(t, b.server, '/channels/paused')
  const left = await openStream(t, b.server, '/channels/left')
  t.same([kept.status, left.status], [200, 200])
  await eventually(async () => (await liveConnections(redisAdmin, 2)).length === 1, 'B to be subscribed')
  const [before] = await a.publish('paused', ['before'])
  await kept.waitForEvents(1)
  // An entry no message announces (B can learn of it only by reading on); then writes (scripts among them) wait for
  // 2 s, and B's subscriber connection is killed: B subscribes again (not a write), and its reads of what it missed
  // time out, and are asked again.
  const during = await redisAdmin.xadd(keys.stream('paused'), '*', 't', 'data: during\n\n') as string
  await redisAdmin.client('PAUSE', 2000, 'WRITE')
  await redisAdmin.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
  await eventually(async () => (await liveConnections(redisAdmin, 2)).length === 1, 'B to be subscribed again')
  left.close()
  t.same(await idsUntil(kept, during, 'the entry'), [before, during], 'read once Redis answers')
})

test('a subscription Redis refuses (an ACL): said once, and the channel\'s events come by the live check', { skip }, async (t) => {
  const redis = await startRedis(t)
  const redisAdmin = await admin(t, redis)
  // This instance may subscribe to one channel only.
  await redisAdmin.call('ACL', 'SETUSER', 'narrow', 'on', '>secret', '~*', '+@all', 'resetchannels', `&${keys.stream('allowed')}`)
  const a = await startInstance(t, { protocol: 'h2c', redis: redis.url })
  const store = new RedisStore({ redis: `redis://narrow:secret@127.0.0.1:${redis.port}`, liveCheckInterval: 100 })
  const b = await startServer(t, 'h2c', (app) => {
    app.get('/:name', (request, reply) => reply.sse(app.sse.channel((request.params as { name: string }).name)))
  }, { plugin: { store } })
  const [allowed, denied] = await Promise.all([openStream(t, b, '/allowed'), openStream(t, b, '/denied')])
  const logged = await b.logs.waitFor((record) => record.level === ERROR && record.channel === 'denied', 'the refusal')
  t.match(logged, { msg: /refused a subscription to a channel/, err: { message: /NOPERM/ } })
  const ids = await Promise.all([a.publish('allowed', ['1']), a.publish('denied', ['1'])])
  t.same(await idsUntil(allowed, ids[0][0], 'the allowed channel\'s event'), ids[0], 'the other channel is subscribed to')
  t.same(await idsUntil(denied, ids[1][0], 'the denied channel\'s event'), ids[1], 'the denied one, by the live check')
  t.equal(b.logs.records.filter((record) => record.level === ERROR).length, 1, 'said once')
})

test('a store closed while its read of what a channel missed waits for Redis lets go of it', { skip }, async (t) => {
  const redis = await startRedis(t)
  const redisAdmin = await admin(t, redis)
  const store = new RedisStore({ redis: redis.url, commandTimeout: 500, liveCheckInterval: 3_600_000 })
  const said: string[] = []
  const record = (_object: unknown, message: string): void => { said.push(message) }
  store.attach({ debug: record, info: record, warn: record, error: record } as unknown as FastifyBaseLogger)
  // Writes (scripts among them) wait: the channel subscribes and says where it stands, and its read on waits.
  await redisAdmin.client('PAUSE', 2000, 'WRITE')
  store.listen('closing', () => {})
  await store.head('closing')
  await eventually(async () => (await liveConnections(redisAdmin, 1)).length === 1, 'the subscription')
  const started = Date.now()
  await store.close()
  t.ok(Date.now() - started < 1500, 'closed within commandTimeout and a margin, not once Redis answers')
  // The read fails commandTimeout after it was sent: once the store is closed, it is not asked again.
  await new Promise((resolve) => setTimeout(resolve, 700))
  t.same(said.filter((message) => /trying again/.test(message)), [], 'not asked again')
})

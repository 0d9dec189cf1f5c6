import { test } from 'tap'
import { Redis } from 'ioredis'
import { openStream, type SseClient } from './helpers/client'
import { startRedis } from './helpers/redis'
import { RedisProxy } from './helpers/redis-proxy'
import { startServer } from './helpers/server'
import { missingService, mustSkip } from './helpers/services'
import { waitUntil } from './helpers/wait'
import { MISSED_EVENT, type EventToStore } from '../index'
import { RedisStore } from '../redis'
import { parseCursor } from '../lib/protocol/cursor-encoding'

// A live feed cut for longer than the history lasts: what a subscriber gets, on each kind of stream. The instance
// reaches Redis through a proxy that cuts its subscriber connection without a word; its live check (every 100 ms)
// then reads on, finds the events after its position trimmed, and hands over a missed event, then what is retained.

const skip = mustSkip(missingService('redis-server'))

async function last (client: SseClient, data: string): Promise<SseClient['events']> {
  return await waitUntil(client, 'change', () => client.events.some((event) => event.data === data) ? client.events : undefined,
    `the event ${data}`, 20_000)
}

test('a gap beyond the history: every stream is told missed, as a replay tells it, then gets what is retained', { skip }, async (t) => {
  const redis = await startRedis(t)
  const admin = new Redis(redis.url)
  t.teardown(() => admin.disconnect())
  const proxy = await RedisProxy.start(t, redis.port)
  const history = { historySize: 100, historyMaxAge: 0 }
  const publisher = new RedisStore({ redis: redis.url, ...history })
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/plain', (request, reply) => reply.sse(app.sse.channel('cut')))
    app.get('/filtered', (request, reply) => reply.sse(app.sse.channel('cut'), {
      filter: (event) => Number(event.data) % 2 === 0
    }))
    app.get('/several', (request, reply) => reply.sse([app.sse.channel('cut'), app.sse.channel('other')]))
  }, { plugin: { store: new RedisStore({ redis: proxy.url, ...history, liveCheckInterval: 100 }) } })
  const other = await startServer(t, 'h2c', () => {}, { plugin: { store: publisher } })
  const channel = other.app.sse.channel('cut')
  const clients = await Promise.all(['/plain', '/filtered', '/several'].map(async (path) => await openStream(t, server, path)))
  await channel.publish('0')
  await Promise.all(clients.map(async (client) => await client.waitForEvents(1)))
  const line = (await admin.client('LIST') as string).split('\n').find((entry) => entry.includes(' name=fastify-sse-h2:live ')) as string
  t.ok(proxy.freeze(/ addr=(\S+)/.exec(line)?.[1] as string), 'the subscriber connection is cut')
  // Published while it is cut, faster than the live check reads on: Redis keeps about 100 of them (whole nodes).
  for (let i = 1; i <= 300; i += 100) await Promise.all(Array.from({ length: 100 }, async (_, j) => await channel.publish(String(i + j))))
  const [plain, filtered, several] = await Promise.all(clients.map(async (client) => await last(client, '300')))
  const missedAt = plain.findIndex((event) => event.event === MISSED_EVENT)
  t.ok(missedAt === 1, 'the plain stream: its first event, then missed')
  const { channel: said, oldestId } = JSON.parse(plain[1].data)
  t.equal(said, 'cut')
  const kept = plain.slice(2).map((event) => Number(event.data))
  t.ok(kept.length < 300 && kept[kept.length - 1] === 300, `then the ${kept.length} retained, up to the last`)
  t.same(kept, Array.from({ length: kept.length }, (_, i) => 301 - kept.length + i), 'once, in order')
  t.equal(plain[2].id, oldestId, 'oldestId is the first retained')
  t.equal(plain[1].id, undefined, 'the missed event has no id: the client keeps the one it had')
  t.same(filtered.map((event) => event.event === MISSED_EVENT ? MISSED_EVENT : event.data),
    ['0', MISSED_EVENT, ...kept.filter((n) => n % 2 === 0).map(String)], 'a filtered stream: missed too, unfiltered')
  t.same(several.map((event) => event.event === MISSED_EVENT ? MISSED_EVENT : event.data), ['0', MISSED_EVENT, ...kept.map(String)],
    'a stream of several channels: missed too')
  const cursor = parseCursor(several[1].id as string)
  t.ok(cursor?.complete, 'with the stream\'s cursor as its id')
  const resumed = await openStream(t, server, '/several', { headers: { 'last-event-id': several[1].id as string } })
  await resumed.waitForEvents(1)
  t.equal(resumed.events[0].event, MISSED_EVENT, 'and a client that comes back with it is told again, then gets all retained')
})

test('a replay whose read fails (Redis paused past commandTimeout) fails every client waiting on it; the next is read anew', { skip }, async (t) => {
  const redis = await startRedis(t)
  const admin = new Redis(redis.url)
  t.teardown(() => admin.disconnect())
  const store = new RedisStore({ redis: redis.url, commandTimeout: 300, liveCheckInterval: 3_600_000 })
  t.teardown(async () => await store.close())
  const stored = (n: number): EventToStore => ({ id: undefined, body: `data: ${n}\n\n`, snapshot: JSON.stringify({ data: n }) })
  const [first, second] = [await store.append('paused', stored(1)), await store.append('paused', stored(2))]
  // The read script waits with the writes: two clients after different ids share its one read, and its failure.
  await admin.client('PAUSE', 1500, 'WRITE')
  const failed = await Promise.allSettled([store.readAfter('paused', first.id), store.readAfter('paused', second.id)])
  t.same(failed.map((result) => result.status === 'rejected' && /commandTimeout \(300 ms\)/.test(String(result.reason))),
    [true, true], 'both told that Redis did not answer')
  await admin.client('UNPAUSE')
  const replay = await store.readAfter('paused', first.id)
  t.same(replay.found && replay.events.map((event) => event.id), [second.id], 'read anew once Redis answers')
})

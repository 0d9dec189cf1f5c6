import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { MemoryStore } from '../lib/stores/memory-store'
import type { Replay } from '../lib/stores/store'
import type { EventStream } from '../index'
import { startServer } from './helpers/server'
import { openStream, type SseClient } from './helpers/client'
import { laterStore, onALaterTurn, storeOver } from './helpers/store-over'
import { signalled, waitUntil } from './helpers/wait'
import { WARN } from './helpers/logs'
import { StreamCursor } from '../lib/channels/cursor'
import { FakeResponse, recordingLogger } from './helpers/fake-response'
import { Stats } from '../lib/observe/stats'
import { Channels } from '../lib/channels/channels'
import { ChannelSchemas } from '../lib/channels/channel-schemas'
import { EventStream as Stream } from '../lib/channels/event-stream'
import { StreamGroup } from '../lib/stream/stream-group'
import type { RawResponse } from '../lib/stream/response'

// While where one of its channels starts is on its way (a replay, a store's head()), a stream holds what it would
// write, in order, and writes it once every channel knows: what it holds when channels are left, joined or fail
// meanwhile.

function data (client: SseClient): string[] {
  return client.events.map((event) => event.data)
}

async function publish (app: FastifyInstance, channel: string, data: string): Promise<string> {
  return await app.sse.channel(channel).publish({ data: `${channel}:${data}` })
}

test('channels left while their replay is read, read or failing: nothing of them written, nothing logged; the stream goes on',
  async (t) => {
    const inner = new MemoryStore()
    // The replays of r1 and r2 answer when the test says: r1 with what it read, r2 with an error.
    const answers = { r1: signalled(), r2: signalled() }
    const store = storeOver(inner, {
      head: (channel) => inner.head(channel),
      readAfterPosition: async (channel, position): Promise<Replay> => {
        if (channel === 'r1') await answers.r1.promise
        if (channel === 'r2') {
          await answers.r2.promise
          throw new Error('store unreachable')
        }
        return inner.readAfterPosition(channel, position)
      }
    })
    const handle = signalled<EventStream>()
    const server = await startServer(t, 'h2c', (app) => {
      app.get('/all', (request, reply) => reply.sse(['live', 'r1', 'r2'].map((name) => app.sse.channel(name))))
      app.get('/live', (request, reply) => {
        const stream: EventStream = reply.sse([app.sse.channel('live')])
        handle.resolve(stream)
        return stream
      })
    }, { plugin: { store } })
    const { app } = server
    const first = await openStream(t, server, '/all')
    for (const name of ['live', 'r1', 'r2']) await publish(app, name, '0')
    await first.waitForEvents(3)
    first.close()
    for (const name of ['live', 'r1', 'r2']) await publish(app, name, '1')
    const back = await openStream(t, server, '/live', { headers: { 'last-event-id': first.events[2].id as string } })
    await back.waitForEvents(1)
    const stream = await handle.promise
    // Joined again after a lookup; their replays on the way: the stream holds what it writes.
    stream.subscribe(app.sse.channel('r1'))
    stream.subscribe(app.sse.channel('r2'))
    await publish(app, 'live', '2')
    stream.send('own')
    // Left while it holds: the live channel's events held till then are still written, once the stores of the others
    // have answered (a stream is answered, and writes, only then); the others' replays are not.
    stream.unsubscribe(app.sse.channel('live'))
    stream.unsubscribe(app.sse.channel('r1'))
    stream.unsubscribe(app.sse.channel('r2'))
    answers.r1.resolve()
    t.same(data(back), ['live:1'], 'held until the store answers for every channel it waits for')
    answers.r2.resolve()
    await waitUntil(back, 'change', () => (back.events.length >= 3 ? true : undefined), 'what was held')
    t.same(data(back), ['live:1', 'live:2', 'own'])
    await publish(app, 'r1', '2')
    stream.subscribe(app.sse.channel('r2'))
    await publish(app, 'r2', '2')
    await waitUntil(back, 'change', () => (back.events.length >= 4 ? true : undefined), 'r2, joined anew')
    t.same(data(back), ['live:1', 'live:2', 'own', 'r2:2'], 'r1 left, r2 joined anew: from then on')
    t.notOk(stream.closed)
    t.same(server.logs.atLeast(WARN), [], 'the failed replay of a channel left is not an error of the stream')
  })

test('a filter that joins a channel while the stream writes what it held: what is left waits for that channel too', async (t) => {
  const handle = signalled<EventStream>()
  const server = await startServer(t, 'h2c', (app) => {
    const a = app.sse.channel('a')
    const b = app.sse.channel('b')
    app.get('/a', (request, reply) => {
      const stream: EventStream = reply.sse(a, {
        // An event that says to join b (as a page's "invited" event might); b's head() answers on a later turn.
        filter: (event) => {
          if (event.data === 'a:join b') stream.subscribe(b)
          return true
        }
      })
      stream.send('welcome')
      handle.resolve(stream)
      return stream
    })
  }, { plugin: { store: laterStore(new MemoryStore()) } })
  const { app } = server
  const id = await publish(app, 'a', '0')
  await publish(app, 'a', 'join b')
  const client = await openStream(t, server, '/a', { headers: { 'last-event-id': id } })
  await client.waitForEvents(3)
  await publish(app, 'b', '0')
  await client.waitForEvents(4)
  // (b is told missed: the client came back with a's plain id, which cannot say where it stood on b.)
  t.same(data(client), ['a:join b', 'welcome', '{"channel":"b","oldestId":null}', 'b:0'],
    'the replay, the welcome held behind it, then b from where it started')
})

test('a store without head(): subscribers that come while where the channel stands is read share the one read, and are owed what comes meanwhile', async (t) => {
  const inner = new MemoryStore()
  const reads: string[] = []
  const store = storeOver(inner, {
    readAfter: async (channel, lastEventId) => {
      reads.push(`${channel} ${lastEventId}`)
      return await onALaterTurn(() => inner.readAfter(channel, lastEventId))
    }
  })
  const stats = new Stats()
  const channels = new Channels(store, JSON.stringify, recordingLogger([]), new ChannelSchemas({} as unknown as FastifyInstance, JSON.stringify), stats)
  const group = new StreamGroup(0, 1024, 0, stats)
  const news = channels.channel('news')
  await news.publish({ data: 'news:old' })
  // Three streams subscribed in one tick, before the store answers where news stands.
  const clients = [0, 1, 2].map(() => {
    const res = new FakeResponse()
    const stream = new Stream(res as unknown as RawResponse, recordingLogger([]), undefined, JSON.stringify, group)
    stream.open(200, {}, undefined, false)
    stream.join(news, undefined, true)
    return { res, stream }
  })
  t.same(reads, ['news \n'], 'one read for the three')
  // Published before the store answers, which reads on past it: the three subscribed before it, and are owed it.
  await news.publish({ data: 'news:meanwhile' })
  await onALaterTurn(() => undefined)
  await news.publish({ data: 'news:new' })
  const fourth = new Stream(new FakeResponse() as unknown as RawResponse, recordingLogger([]), undefined, JSON.stringify, group)
  fourth.join(news, undefined, true)
  t.same(reads, ['news \n'], 'once it knows, none: it is handed every event as the store takes it')
  // The fake clients read once a turn: a few turns bring it.
  for (let turn = 0; turn < 10 && clients.some(({ res }) => res.events.length === 0); turn++) await onALaterTurn(() => undefined)
  for (const { res } of clients) t.same(res.events.map((event) => event.data), ['news:meanwhile', 'news:new'])
  await channels.close()
})

test('a client behind when its stream holds an own send: dropped, as at any write to it', async (t) => {
  const stats = new Stats()
  const logs: Parameters<typeof recordingLogger>[0] = []
  const channels = new Channels(laterStore(new MemoryStore()), JSON.stringify, recordingLogger(logs),
    new ChannelSchemas({} as unknown as FastifyInstance, JSON.stringify), stats)
  const res = new FakeResponse()
  res.setMode('stalled')
  const stream = new Stream(res as unknown as RawResponse, recordingLogger(logs), undefined, JSON.stringify,
    new StreamGroup(0, 100, 0, stats))
  stream.open(200, {}, undefined, false)
  // Given, and not taken: two turns later it counts as what the client is behind by.
  for (let i = 0; i < 10; i++) stream.send({ data: 'x'.repeat(50) })
  for (let turn = 0; turn < 3; turn++) await onALaterTurn(() => undefined)
  // Where the channel starts is on its way: the stream holds its own send, which admits it as any write.
  stream.subscribe(channels.channel('a'))
  t.equal(stream.send({ data: 'held' }), false)
  t.match(stream.signal.reason, { code: 'FST_SSE_SLOW_CLIENT' })
  t.match(logs, [{ level: 'warn', msg: /fell behind/ }])
  await channels.close()
})

test('a channel left and joined anew while its stream holds: what was held for the one it left gives way to the new one', async (t) => {
  const handle = signalled<EventStream>()
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/ab', (request, reply) => {
      const stream: EventStream = reply.sse([app.sse.channel('a')])
      handle.resolve(stream)
      return stream
    })
  }, { plugin: { store: laterStore(new MemoryStore()) } })
  const { app } = server
  const client = await openStream(t, server, '/ab')
  const stream = await handle.promise
  // b's head() on its way: the stream holds what it writes, a's event included.
  stream.subscribe(app.sse.channel('b'))
  await publish(app, 'a', 'held for the first')
  stream.unsubscribe(app.sse.channel('a'))
  // Joined anew before the stream wrote what it held: from where a stands now, which is past that event.
  stream.subscribe(app.sse.channel('a'))
  await publish(app, 'a', 'for the second')
  await client.waitForEvents(1)
  t.same(data(client), ['a:for the second'], 'each event of a once, from the new subscription on')
  t.match(new StreamCursor(client.events[0].id).resumeOf('a'), { position: String }, 'a cursor that places a (named once)')
})

import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { MemoryStore } from '../lib/stores/memory-store'
import type { SseStore } from '../lib/stores/store'
import { MISSED_EVENT, type EventStream } from '../index'
import { startServer } from './helpers/server'
import { openStream, type SseClient } from './helpers/client'
import { laterStore, storeOver } from './helpers/store-over'
import { waitUntil } from './helpers/wait'

// A channel of a stream of several channels that published before the client first connected, and then stayed
// quiet: the stream's cursor places it from the moment it is subscribed, so a reconnect replays none of its history.

const STORES: Array<[string, () => SseStore]> = [
  ['the memory store', () => new MemoryStore()],
  ['a store without head()', () => storeOver(new MemoryStore(), {})],
  ['a store whose reads and head() answer on a later turn', () => laterStore(new MemoryStore())],
  ['a store without head() whose reads answer on a later turn', () => laterStore(new MemoryStore(), { head: false })]
]

function routes (app: FastifyInstance): void {
  const quiet = app.sse.channel('quiet')
  const busy = app.sse.channel('busy')
  // The README's dashboard: a list of channels, and a room joined on an open stream.
  app.get('/list', (request, reply) => reply.sse([quiet, busy]))
  app.get('/joins', (request, reply) => {
    const stream: EventStream = reply.sse(busy)
    stream.subscribe(quiet)
    return stream
  })
}

function of (client: SseClient, channel: string): string[] {
  return client.events.map((event) => event.data).filter((data) => data.startsWith(`${channel}:`))
}

async function publish (app: FastifyInstance, channel: string, data: string): Promise<void> {
  await app.sse.channel(channel).publish({ data: `${channel}:${data}` })
}

for (const [storeName, makeStore] of STORES) {
  for (const path of ['/list', '/joins']) {
    test(`${storeName}, ${path}: a reconnect replays none of a quiet channel's history from before the client came`, async (t) => {
      const server = await startServer(t, 'h2c', routes, { plugin: { store: makeStore() } })
      const { app } = server
      await publish(app, 'quiet', 'old-0')
      await publish(app, 'quiet', 'old-1')
      const first = await openStream(t, server, path)
      // The stream is answered once every channel knows where it starts: what is published now is owed.
      await publish(app, 'busy', '0')
      await first.waitForEvents(1)
      const cursor = first.events[0].id as string
      first.close()
      await publish(app, 'quiet', 'while away')
      await publish(app, 'busy', 'while away')
      const back = await openStream(t, server, path, { headers: { 'last-event-id': cursor } })
      await waitUntil(back, 'change', () => (of(back, 'busy').length > 0 && of(back, 'quiet').length > 0 ? true : undefined),
        'both channels\' replays')
      await publish(app, 'quiet', 'live')
      await waitUntil(back, 'change', () => (of(back, 'quiet').includes('quiet:live') ? true : undefined), 'the live event')
      t.same(of(back, 'quiet'), ['quiet:while away', 'quiet:live'], 'the quiet channel: what it published while the client was away')
      t.same(of(back, 'busy'), ['busy:while away'])
      t.same(back.events.filter((event) => event.event === MISSED_EVENT), [], 'nothing missed')
    })
  }
}

test('a channel that retains nothing when the client subscribes: a reconnect replays all it published since', async (t) => {
  const server = await startServer(t, 'h2c', routes)
  const { app } = server
  const first = await openStream(t, server, '/list')
  await publish(app, 'busy', '0')
  await first.waitForEvents(1)
  first.close()
  await publish(app, 'quiet', 'while away')
  const back = await openStream(t, server, '/list', { headers: { 'last-event-id': first.events[0].id as string } })
  await waitUntil(back, 'change', () => (of(back, 'quiet').length > 0 ? true : undefined), 'the quiet channel\'s replay')
  t.same(of(back, 'quiet'), ['quiet:while away'])
  t.same(back.events.filter((event) => event.event === MISSED_EVENT), [])
})

test('a store without head() that cannot read where a channel stands: the stream is refused, as one whose head() fails', async (t) => {
  const inner = new MemoryStore()
  const store = storeOver(inner, {
    readAfter: (channel, lastEventId) => {
      if (lastEventId === '\n') throw new Error('store unreachable')
      return inner.readAfter(channel, lastEventId)
    }
  })
  const server = await startServer(t, 'h2c', routes, { plugin: { store } })
  const refused = await openStream(t, server, '/list', { headers: { accept: '*/*' } })
  await refused.waitForEnd()
  t.equal(refused.status, 503)
  t.match(JSON.parse(refused.text), { code: 'FST_SSE_CHANNEL_UNAVAILABLE', message: /store unreachable/ })
})

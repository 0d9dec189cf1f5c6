import { test } from 'tap'
import { openStream, type SseClient } from './helpers/client'
import { startServer } from './helpers/server'
import { storeOver } from './helpers/store-over'
import { waitUntil } from './helpers/wait'
import { MISSED_EVENT, MemoryStore, type StoredEvent, type StoredEventListener } from '../index'
import { isCursor } from '../lib/protocol/cursor-encoding'

// A store whose live feed was cut for longer than its history lasts hands its listeners a missed event in place of
// what it can no longer deliver (the Redis store does: test/redis-missed.test.ts, with a real cut). Here a store of
// the test's own hands one over, so that what every kind of stream does with it is checked without Redis.

async function dataUntil (client: SseClient, data: string): Promise<Array<string | undefined>> {
  await waitUntil(client, 'change', () => client.events.some((event) => event.data === data) ? true : undefined, `the event ${data}`)
  return client.events.map((event) => event.event === MISSED_EVENT ? MISSED_EVENT : event.data)
}

test('a missed event from the store\'s live feed: every kind of stream gets it, unfiltered, then what follows', async (t) => {
  const inner = new MemoryStore()
  const listeners = new Set<StoredEventListener>()
  const store = storeOver(inner, {
    listen: (channel, listener) => {
      inner.listen(channel, listener)
      if (channel === 'cut') listeners.add(listener)
    }
  })
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/plain', (request, reply) => reply.sse(app.sse.channel('cut')))
    app.get('/filtered', (request, reply) => reply.sse(app.sse.channel('cut'), { filter: (event) => Number(event.data) % 2 === 0 }))
    app.get('/several', (request, reply) => reply.sse([app.sse.channel('cut'), app.sse.channel('other')]))
  }, { plugin: { store } })
  const cut = server.app.sse.channel('cut')
  const clients = await Promise.all(['/plain', '/filtered', '/several'].map(async (path) => await openStream(t, server, path)))
  // Its id is its position: the publisher gave none.
  const first = await cut.publish('0')
  await Promise.all(clients.map(async (client) => await dataUntil(client, '0')))
  // Right after the first event, before the next: as the Redis store places it, before the oldest event retained.
  const data = { channel: 'cut', oldestId: 'gone' }
  const missed: StoredEvent = {
    id: '',
    position: `${first}-1`,
    frame: `event: ${MISSED_EVENT}\ndata: ${JSON.stringify(data)}\n\n`,
    event: Object.freeze({ id: '', event: MISSED_EVENT, data }),
    missed: true
  }
  for (const listener of listeners) listener(missed)
  await cut.publish('1')
  await cut.publish('2')
  const [plain, filtered, several] = await Promise.all(clients.map(async (client) => await dataUntil(client, '2')))
  t.same(plain, ['0', MISSED_EVENT, '1', '2'], 'a stream of one channel')
  t.same(filtered, ['0', MISSED_EVENT, '2'], 'a filtered one: missed too, unfiltered')
  t.same(several, ['0', MISSED_EVENT, '1', '2'], 'a stream of several channels')
  t.equal(clients[0].events[1].id, undefined, 'of one channel, the missed event has no id: the client keeps the one it had')
  const severalMissed = clients[2].events[1]
  t.ok(severalMissed.id !== undefined && isCursor(severalMissed.id), 'of several, its id is the cursor past it')
  t.same(JSON.parse(severalMissed.data), data)
})

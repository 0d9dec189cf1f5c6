import { test } from 'tap'
import { startServer, type Protocol } from './helpers/server'
import { openStream } from './helpers/client'
import { storeOver } from './helpers/store-over'
import { signalled } from './helpers/wait'
import { eventually } from './helpers/redis'
import { MemoryStore } from '../index'

// A channel stream opens only once its store has said where it starts: with a store that answers later (Redis, any
// store over a network), every stream of a reconnect storm may still wait for its answer when the next arrives. Limits
// must count them from the moment they are admitted, not from when they open. Here the store answers nothing until
// every request of the storm has reached its handler.

const PROTOCOLS_UNDER_TEST: Protocol[] = ['h2c', 'http1']
const READS_STATUS = { headers: { accept: '*/*' } }
const STORM = 20

for (const protocol of PROTOCOLS_UNDER_TEST) {
  for (const [limits, admitted] of [[{ maxStreams: 5 }, 5], [{ maxStreams: 5, maxStreamsPerAddress: 3 }, 3]] as const) {
    test(`${protocol}: ${STORM} channel streams at once, a store that answers later, limits ${JSON.stringify(limits)}: ${admitted} open`, async (t) => {
      const inner = new MemoryStore()
      inner.append('news', { id: undefined, body: 'data: before\n\n', snapshot: '{"data":"before"}' })
      const everyRequestIn = signalled()
      let handled = 0
      const store = storeOver(inner, {
        head: async (channel) => {
          await everyRequestIn.promise
          return inner.readAfter(channel, '\n').events.at(-1)?.position
        },
        readAfter: async (channel, lastEventId) => {
          await everyRequestIn.promise
          return inner.readAfter(channel, lastEventId)
        }
      })
      const server = await startServer(t, protocol, (app) => {
        app.addHook('onRequest', async () => { if (++handled === STORM) everyRequestIn.resolve() })
        app.get('/news', (request, reply) => reply.sse(app.sse.channel('news')))
        app.get('/list', (request, reply) => reply.sse([app.sse.channel('news'), app.sse.channel('other')]))
      }, { plugin: { limits, store } })
      // All asked in the same turn, half a single channel and half a list, resuming or not.
      const clients = await Promise.all(Array.from({ length: STORM }, async (_, i) =>
        await openStream(t, server, i % 2 === 0 ? '/news' : '/list', {
          headers: { ...READS_STATUS.headers, ...(i % 4 === 0 ? { 'last-event-id': 'unknown' } : {}) }
        })))
      const statuses = clients.map((client) => client.status)
      t.equal(statuses.filter((status) => status === 200).length, admitted, `${admitted} streams open`)
      t.equal(statuses.filter((status) => status === 503).length, STORM - admitted, 'the others refused with 503')
      t.same(server.app.sse.stats().streams.open, admitted)
      t.equal(server.app.sse.stats().streams.refused.FST_SSE_TOO_MANY_STREAMS, STORM - admitted)

      // The slots are given back: closed ones free theirs for new streams, and only that many.
      const open = clients.filter((client) => client.status === 200)
      for (const client of open) client.close()
      await eventually(() => server.app.sse.stats().streams.open === 0, 'the server to see the clients leave')
      const again = await Promise.all(Array.from({ length: admitted + 1 }, async () =>
        await openStream(t, server, '/news', READS_STATUS)))
      const reopened = again.map((client) => client.status).sort()
      t.same(reopened, [...Array.from({ length: admitted }, () => 200), 503], 'as many open again, once closed')
    })
  }
}

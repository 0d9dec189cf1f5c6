import { test } from 'tap'
import { errors } from '../index'
import { PROTOCOLS, startServer } from './helpers/server'
import { openStream } from './helpers/client'
import { signalled, within } from './helpers/wait'

// The mistake this guards against: the data given as the event (`publish(request.body)`). Sent as it was, it
// wrote an event with no data, which no EventSource dispatches: the page saw nothing, and nobody was told.
// (A pulled source that yields one: test/errors.test.ts.)
const POSTED = { title: 'Hello' }

for (const protocol of PROTOCOLS) {
  test(`${protocol}: publish() of an object that is not an event rejects with a code; subscribers get nothing of it, and go on`,
    async (t) => {
      const server = await startServer(t, protocol, (app) => {
        app.get('/news', (request, reply) => reply.sse(app.sse.channel('news')))
        app.post('/news', async (request) => ({ id: await app.sse.channel('news').publish(request.body as never) }))
      })
      const subscriber = await openStream(t, server, '/news')
      const refused = await server.app.inject({ method: 'POST', url: '/news', payload: POSTED })
      t.equal(refused.statusCode, 500)
      t.match(refused.json(), { code: 'FST_SSE_UNKNOWN_EVENT_FIELD', message: /an event has no field 'title'/ })
      const empty = await server.app.inject({ method: 'POST', url: '/news', payload: {} })
      t.match(empty.json(), { code: 'FST_SSE_INVALID_EVENT' })
      const accepted = await server.app.inject({ method: 'POST', url: '/news', payload: { event: 'news', data: POSTED } })
      t.equal(accepted.statusCode, 200, 'the event, with the object as its data, is taken')
      const [event] = await subscriber.waitForEvents(1)
      t.same({ event: event.event, data: JSON.parse(event.data) }, { event: 'news', data: POSTED })
      t.equal(subscriber.events.length, 1, 'nothing of the refused ones')
      t.same(await within(server.app.sse.channel('news').publish({ data: 'still open' }).then(() => 'published'), 'a publish'),
        'published')
      await subscriber.waitForEvents(2)
    })
}

test('send() of an object that is not an event throws with a code, writes nothing, and the stream stays usable', async (t) => {
  const thrown = signalled<unknown[]>()
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/', (request, reply) => {
      const stream = reply.sse()
      const errors: unknown[] = []
      for (const bad of [POSTED, {}, { data: undefined }, { data: 'x', extra: 1 }]) {
        try {
          stream.send(bad as never)
        } catch (error) {
          errors.push(error)
        }
      }
      thrown.resolve(errors)
      stream.send({ data: POSTED })
      stream.close()
    })
  })
  const client = await openStream(t, server, '/')
  await client.waitForEnd()
  const [unknown, empty, undefinedData, extra] = await within(thrown.promise, 'the throws')
  t.ok(unknown instanceof errors.FST_SSE_UNKNOWN_EVENT_FIELD && unknown instanceof TypeError, '{ title }')
  t.ok(empty instanceof errors.FST_SSE_INVALID_EVENT, '{}')
  t.ok(undefinedData instanceof errors.FST_SSE_INVALID_EVENT, '{ data: undefined }')
  t.match(extra, { code: 'FST_SSE_UNKNOWN_EVENT_FIELD', message: /no field 'extra'/ })
  t.same(client.events.map((event) => event.data), [JSON.stringify(POSTED)], 'only the event sent as one')
})

import { test } from 'tap'
import { PROTOCOLS, startServer } from './helpers/server'
import { openStream } from './helpers/client'

for (const protocol of PROTOCOLS) {
  test(`${protocol}: events from an async generator arrive in order, framed, and the stream ends with it`, async (t) => {
    const server = await startServer(t, protocol, (app) => {
      app.get('/ticks', (request, reply) => reply.sse(async function * () {
        for (let i = 0; i < 3; i++) yield { id: String(i), event: 'tick', data: { i } }
        yield 'two\nlines'
      }))
    })
    const client = await openStream(t, server, '/ticks')
    t.equal(client.status, 200)
    t.equal(client.headers['content-type'], 'text/event-stream; charset=utf-8')
    await client.waitForEnd()
    t.same(client.events, [
      { id: '0', event: 'tick', data: '{"i":0}' },
      { id: '1', event: 'tick', data: '{"i":1}' },
      { id: '2', event: 'tick', data: '{"i":2}' },
      { id: undefined, event: undefined, data: 'two\nlines' }
    ])
    t.same(server.logs.atLeast(40), [], 'nothing was logged as a warning or an error')
  })
}

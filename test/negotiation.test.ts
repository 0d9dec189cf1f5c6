import { test } from 'tap'
import { EventSource } from 'eventsource'
import { startServer, type TestServer } from './helpers/server'
import { openStream } from './helpers/client'
import { onceWithin } from './helpers/wait'
import { negotiate } from '../lib/protocol/negotiation'

async function dualServer (t: Parameters<typeof startServer>[0], protocol: 'h2c' | 'http1' = 'h2c'): Promise<TestServer> {
  return await startServer(t, protocol, (app) => {
    app.get('/prices', { config: { sse: { negotiate: true, compression: true } } }, async (request, reply) => {
      if (request.wantsEventStream) return reply.sse([{ data: { symbol: 'A', price: 1 } }])
      return [{ symbol: 'A', price: 1 }]
    })
  })
}

test('a negotiated route: an event stream for EventSource, JSON for the others, 406 for a request that takes neither', async (t) => {
  const server = await dualServer(t)
  const stream = await openStream(t, server, '/prices', { headers: { accept: 'text/event-stream' } })
  await stream.waitForEnd()
  t.equal(stream.status, 200)
  t.match(stream.headers['content-type'], /^text\/event-stream/)
  t.equal(stream.headers.vary, 'accept, accept-encoding', 'caches keep the two apart, and the encodings')
  t.same(stream.events.map((event) => event.data), ['{"symbol":"A","price":1}'])

  for (const accept of ['application/json', '*/*', 'text/event-stream;q=0.5, application/json', 'application/*']) {
    const response = await server.app.inject({ url: '/prices', headers: { accept } })
    t.equal(response.statusCode, 200, accept)
    t.match(response.headers['content-type'], /^application\/json/, accept)
    t.same(response.json(), [{ symbol: 'A', price: 1 }])
    t.equal(response.headers.vary, 'accept')
  }
  const noAccept = await server.app.inject({ url: '/prices', headers: { accept: '' } })
  t.match(noAccept.headers['content-type'], /^application\/json/, 'no Accept takes anything: JSON')

  const refused = await server.app.inject({ url: '/prices', headers: { accept: 'text/html, image/png' } })
  t.equal(refused.statusCode, 406)
  t.match(refused.json(), { statusCode: 406, code: 'FST_SSE_NOT_ACCEPTABLE', message: /accepts neither \(accept: 'text\/html, image\/png'\)/ })
})

test('a compressed negotiated stream varies on both headers', async (t) => {
  const server = await dualServer(t, 'http1')
  const stream = await openStream(t, server, '/prices', { headers: { 'accept-encoding': 'gzip' } })
  t.equal(stream.headers['content-encoding'], 'gzip')
  t.equal(stream.headers.vary, 'accept, accept-encoding')
})

test('a browser\'s EventSource gets the stream', async (t) => {
  const server = await dualServer(t, 'http1')
  const source = new EventSource(`${server.origin}/prices`)
  t.teardown(() => source.close())
  const [message] = await onceWithin(source as unknown as import('node:events').EventEmitter, 'message', 'the event') as [MessageEvent]
  t.equal(message.data, '{"symbol":"A","price":1}')
})

test('negotiate() weighs media ranges as RFC 9110 does', async (t) => {
  const cases: Array<[string | string[] | undefined, string | undefined]> = [
    [undefined, 'json'],
    ['text/event-stream', 'event-stream'],
    ['TEXT/Event-Stream; charset=utf-8', 'event-stream'],
    ['application/json, text/event-stream', 'event-stream'],
    ['text/event-stream;q=0.4, application/json;q=0.5', 'json'],
    ['text/*', 'event-stream'],
    ['text/*, application/json;q=0.1', 'json'],
    ['*/*', 'json'],
    ['*/*, application/json;q=0', 'event-stream'],
    ['text/event-stream;q=0, */*', 'json'],
    ['text/event-stream;q=0, application/json;q=0', undefined],
    ['image/png', undefined],
    ['text/event-stream;q=abc', 'event-stream'],
    ['text/event-stream;q=2', 'event-stream'],
    [', nonsense, text/event-stream', 'event-stream'],
    [['image/png', 'text/event-stream'], 'event-stream']
  ]
  for (const [accept, expected] of cases) t.equal(negotiate(accept), expected, String(accept))
})

test('request.wantsEventStream is there on every route, negotiated or not', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/', async (request) => ({ wants: request.wantsEventStream }))
  })
  t.same((await server.app.inject({ url: '/', headers: { accept: 'text/event-stream' } })).json(), { wants: true })
  t.same((await server.app.inject({ url: '/', headers: { accept: 'image/png' } })).json(), { wants: false },
    'a route that does not negotiate does not refuse')
})

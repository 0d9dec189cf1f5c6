import { test } from 'tap'
import http from 'node:http'
import http2 from 'node:http2'
import { EventEmitter, once } from 'node:events'
import type { FastifyInstance } from 'fastify'
import { startServer, type TestServer } from './helpers/server'
import { connectSession, openStream } from './helpers/client'
import { waitUntil, within } from './helpers/wait'
import { WARN } from './helpers/logs'
import fc from 'fast-check'

// Clients that vanish while a large event is half written: the server must not crash or reject unhandled,
// the source must be ended, and the other streams must go on.

const LARGE = 'x'.repeat(4 * 1024 * 1024)

interface Ends {
  reasons: string[]
  events: EventEmitter
}

function routes (ends: Ends) {
  return (app: FastifyInstance): void => {
    app.get('/large', (request, reply) => reply.sse(async function * ({ signal }) {
      try {
        yield { id: '1', data: LARGE }
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))
      } finally {
        ends.reasons.push((signal.reason as { code: string }).code)
        ends.events.emit('end')
      }
    }))
    app.get('/news', (request, reply) => reply.sse(app.sse.channel('news')))
  }
}

/** Resolves with the bytes read once at least `bytes` of the body have arrived: the event is half written. */
async function readAtLeast (body: NodeJS.ReadableStream, bytes: number): Promise<number> {
  let received = 0
  await within(new Promise<void>((resolve) => {
    body.on('data', (chunk: Buffer) => {
      received += chunk.length
      if (received >= bytes) resolve()
    })
  }), `the first ${bytes} bytes of the event`)
  return received
}

async function sourceEnded (ends: Ends, count: number): Promise<void> {
  await waitUntil(ends.events, 'end', () => (ends.reasons.length >= count ? true : undefined), `${count} sources to end`)
}

test('http1: the socket destroyed while a 4 MiB event is half written', async (t) => {
  const ends: Ends = { reasons: [], events: new EventEmitter() }
  const server = await startServer(t, 'http1', routes(ends))
  const other = await openStream(t, server, '/news')
  const request = http.get(`${server.origin}/large`, { agent: false })
  request.on('error', () => {})
  const [response] = await within(once(request, 'response'), 'the response') as [http.IncomingMessage]
  const received = await readAtLeast(response, 256 * 1024)
  response.socket.destroy()
  await sourceEnded(ends, 1)
  t.same(ends.reasons, ['FST_SSE_CLIENT_CLOSED'], `the source was ended after ${received} of ${LARGE.length} bytes`)
  await server.app.sse.channel('news').publish('still here')
  await other.waitForEvents(1)
  t.equal(other.events[0].data, 'still here', 'the stream of another connection goes on')
  t.same(server.logs.atLeast(WARN), [], 'nothing logged above info: a client that leaves is no error')
})

for (const protocol of ['h2c', 'h2'] as const) {
  test(`${protocol}: RST_STREAM, then the session destroyed, while 4 MiB events are half written`, async (t) => {
    const ends: Ends = { reasons: [], events: new EventEmitter() }
    const server = await startServer(t, protocol, routes(ends))
    const session = await connectSession(t, server, { windowSize: 1024 * 1024 })
    const other = await openStream(t, server, '/news', { session })
    const large = async (on: http2.ClientHttp2Session): Promise<http2.ClientHttp2Stream> => {
      const request = on.request({ ':path': '/large' })
      request.on('error', () => {})
      await readAtLeast(request, 256 * 1024)
      request.pause()
      return request
    }
    ;(await large(session)).close(http2.constants.NGHTTP2_CANCEL)
    await sourceEnded(ends, 1)
    await server.app.sse.channel('news').publish('after the reset')
    await other.waitForEvents(1)
    t.equal(other.events[0].data, 'after the reset', 'another stream of the same session goes on')

    const doomed = await connectSession(t, server)
    await large(doomed)
    doomed.destroy()
    await sourceEnded(ends, 2)
    t.same(ends.reasons, ['FST_SSE_CLIENT_CLOSED', 'FST_SSE_CLIENT_CLOSED'], 'both sources were ended')
    await server.app.sse.channel('news').publish('after the session')
    await other.waitForEvents(2)
    t.same(server.logs.atLeast(WARN), [], 'nothing logged above info')
  })
}

test('a subscriber of one channel never gets another channel\'s events', async (t) => {
  const names = ['alpha', 'beta', 'gamma', 'delta', 'epsilon']
  const server: TestServer = await startServer(t, 'h2c', (app) => {
    app.get('/:channel', (request, reply) => reply.sse(app.sse.channel((request.params as { channel: string }).channel)))
  })
  const session = await connectSession(t, server)
  const clients = await Promise.all(names.flatMap((name) =>
    Array.from({ length: 20 }, async () => ({ name, client: await openStream(t, server, `/${name}`, { session }) }))))
  // Interleaved: every channel publishes in every tick.
  for (let round = 0; round < 50; round++) {
    await Promise.all(names.map(async (name) => await server.app.sse.channel(name).publish({ event: name, data: `${name} ${round}` })))
  }
  await Promise.all(clients.map(async ({ client }) => await client.waitForEvents(50)))
  const strays = clients.filter(({ name, client }) =>
    client.events.some((event) => event.event !== name || !event.data.startsWith(`${name} `)))
  t.equal(strays.length, 0, '100 subscribers of 5 channels: each got only its own channel\'s 50 events')
  t.ok(clients.every(({ name, client }) => client.events.every((event, i) => event.data === `${name} ${i}`)), 'in order')
})

test('h2c: user data full of CR, LF and field lines, sent over a real stream, never makes an event, field or id', async (t) => {
  const pieces = ['\r', '\n', '\r\n', '\n\n', 'event: admin', 'id: 999', 'retry: 1', 'data: forged', ':', ' ', 'é', 'text']
  const datas = fc.sample(fc.array(fc.constantFrom(...pieces), { minLength: 1, maxLength: 12 }).map((parts) => parts.join('')),
    { numRuns: 500, seed: 42 })
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/', (request, reply) => reply.sse(datas.map((data, i) => ({ id: String(i), event: 'message', data }))))
  })
  const client = await openStream(t, server, '/')
  await client.waitForEnd()
  t.equal(client.events.length, datas.length, `${datas.length} events sent, as many received`)
  const normalized = datas.map((data) => data.replace(/\r\n|\r/g, '\n'))
  t.ok(client.events.every((event, i) => event.id === String(i) && event.event === 'message' && event.data === normalized[i]),
    'each with its own id and type, and its data whole (line breaks as LF)')
  t.same(client.retries, [], 'no retry was forged')
})

import { test } from 'tap'
import { EventEmitter } from 'node:events'
import { EventSource, type FetchLike } from 'eventsource'
import { Agent, fetch as undiciFetch } from 'undici'
import type { FastifyInstance } from 'fastify'
import { startServer, type Protocol, type TestServer } from './helpers/server'
import { waitUntil } from './helpers/wait'
import { WARN } from './helpers/logs'
import type { EventStream } from '../index'

const PER_CONNECTION = 3
const CONNECTIONS = 4
const TOTAL = PER_CONNECTION * CONNECTIONS

interface Connection {
  httpVersion: string
  lastEventIdHeader: string | undefined
  lastEventId: string | undefined
  stream: EventStream
}

/**
 * A feed of numbered events that resumes after the client's last event id. Each connection gets three
 * events; then the even ones end because their source ends, the odd ones stay open until the test
 * closes them from the server side.
 */
function feed (connections: Connection[], opened: EventEmitter) {
  return (app: FastifyInstance): void => {
    app.get('/feed', (request, reply) => {
      const index = connections.length
      const stream = reply.sse(async function * ({ lastEventId, signal }) {
        const from = lastEventId === undefined ? 1 : Number(lastEventId) + 1
        for (let id = from; id < from + PER_CONNECTION; id++) yield { id: String(id), data: `event ${id}` }
        if (index % 2 === 0) return
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))
      })
      const header = request.headers['last-event-id']
      connections.push({
        httpVersion: request.raw.httpVersion,
        lastEventIdHeader: Array.isArray(header) ? header[0] : header,
        lastEventId: stream.lastEventId,
        stream
      })
      opened.emit('change')
    })
  }
}

interface Received {
  id: string
  data: string
}

async function followFeed (t: tap.Test, protocol: Protocol, fetch: (server: TestServer) => FetchLike | undefined): Promise<Connection[]> {
  const connections: Connection[] = []
  const opened = new EventEmitter()
  const server = await startServer(t, protocol, feed(connections, opened), { plugin: { retry: 50 } })

  const received: Received[] = []
  const arrived = new EventEmitter()
  const custom = fetch(server)
  const source = new EventSource(`${server.origin}/feed`, custom === undefined ? undefined : { fetch: custom })
  t.teardown(() => source.close())
  source.addEventListener('message', (event) => {
    received.push({ id: event.lastEventId, data: String(event.data) })
    arrived.emit('change')
  })

  for (let k = 0; k < CONNECTIONS; k++) {
    await waitUntil(opened, 'change', () => connections[k], `connection ${k + 1}`)
    await waitUntil(arrived, 'change', () => (received.length >= (k + 1) * PER_CONNECTION ? true : undefined),
      `${(k + 1) * PER_CONNECTION} events (got ${received.length})`)
    // The test drops this one from the server side; the even ones ended with their source.
    if (k % 2 === 1) connections[k].stream.close()
  }
  source.close()

  t.same(received, Array.from({ length: TOTAL }, (_, i) => ({ id: String(i + 1), data: `event ${i + 1}` })),
    'every event once, in order, across the reconnections')
  t.same(connections.map((connection) => connection.lastEventIdHeader), [undefined, '3', '6', '9'],
    'each reconnection sent Last-Event-ID')
  t.same(connections.map((connection) => connection.lastEventId), [undefined, '3', '6', '9'],
    'and the stream read it')
  t.same(server.logs.atLeast(WARN), [])
  return connections
}

test('http1: the eventsource package receives events, reconnects by itself after `retry` and resumes', async (t) => {
  const connections = await followFeed(t, 'http1', () => undefined)
  t.same(connections.map((connection) => connection.httpVersion), ['1.1', '1.1', '1.1', '1.1'])
})

test('h2: the same over HTTP/2 with TLS, through undici', async (t) => {
  const connections = await followFeed(t, 'h2', (server) => {
    const dispatcher = new Agent({ allowH2: true, connect: { ca: server.ca } })
    t.teardown(() => dispatcher.destroy())
    return async (url, init) => await undiciFetch(url, { ...init, dispatcher })
  })
  t.same(connections.map((connection) => connection.httpVersion), ['2.0', '2.0', '2.0', '2.0'],
    'every connection was HTTP/2')
})

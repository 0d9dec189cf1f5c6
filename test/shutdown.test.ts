import { test } from 'tap'
import { EventEmitter } from 'node:events'
import type { FastifyInstance } from 'fastify'
import { startServer, type Protocol } from './helpers/server'
import { connectSession, openStream, type SseClient } from './helpers/client'
import { waitUntil, within } from './helpers/wait'
import type { EventStream } from '../index'

interface Tally {
  finallies: number
  pushed: EventStream[]
}

function routes (tally: Tally, events: EventEmitter) {
  return (app: FastifyInstance): void => {
    app.get('/pull', (request, reply) => reply.sse(async function * ({ signal }) {
      try {
        yield 'open'
        await new Promise((resolve) => signal.addEventListener('abort', resolve))
      } finally {
        tally.finallies++
        events.emit('change')
      }
    }))
    app.get('/push', (request, reply) => {
      const stream = reply.sse()
      stream.send('open')
      tally.pushed.push(stream)
    })
  }
}

const loads: Array<[Protocol, number, number]> = [['h2c', 2000, 8], ['h2', 300, 2], ['http1', 1000, 0]]

for (const [protocol, count, sessionCount] of loads) {
  test(`${protocol}: app.close() with ${count} streams open ends them all and resolves promptly`, async (t) => {
    const tally: Tally = { finallies: 0, pushed: [] }
    const events = new EventEmitter()
    const server = await startServer(t, protocol, routes(tally, events), { logLevel: 'warn' })
    const sessions = await Promise.all(Array.from({ length: sessionCount }, () => connectSession(t, server)))
    const clients: SseClient[] = []
    for (let opened = 0; opened < count; opened += 100) {
      clients.push(...await Promise.all(Array.from({ length: 100 }, (_, i) => openStream(t, server, i % 2 === 0 ? '/pull' : '/push',
        { session: sessions.length > 0 ? sessions[(opened + i) % sessions.length] : undefined }))))
    }
    await Promise.all(clients.map((client) => client.waitForEvents(1)))
    const started = Date.now()
    await within(server.app.close(), 'app.close()', 10_000)
    const took = Date.now() - started
    t.comment(`app.close() with ${count} ${protocol} streams took ${took} ms`)
    await waitUntil(events, 'change', () => (tally.finallies === count / 2 ? true : undefined), 'every source finally')
    t.equal(tally.finallies, count / 2, 'every pulled source\'s finally ran')
    t.ok(tally.pushed.every((stream) => stream.signal.aborted && (stream.signal.reason as { code: string }).code === 'FST_SSE_SERVER_CLOSING'),
      'every push handle aborted with FST_SSE_SERVER_CLOSING')
    await Promise.all(clients.map((client) => client.waitForEnd()))
    t.pass('every client saw its stream end')
  })
}

test('app.close() drops a client that never reads after the grace period', async (t) => {
  const tally: Tally = { finallies: 0, pushed: [] }
  const server = await startServer(t, 'h2c', routes(tally, new EventEmitter()), { plugin: { maxBufferedBytes: 64 * 1024 * 1024 } })
  const stuck = await openStream(t, server, '/push')
  await stuck.waitForEvents(1)
  stuck.pause()
  const chunk = 'x'.repeat(16 * 1024)
  for (let i = 0; i < 100; i++) tally.pushed[0].send(chunk)
  const reading = await openStream(t, server, '/pull')
  await reading.waitForEvents(1)
  const started = Date.now()
  await within(server.app.close(), 'app.close() with a client that never reads', 5000)
  t.ok(Date.now() - started >= 900, 'it waited for the grace period')
  await reading.waitForEnd()
  stuck.resume()
  await stuck.waitForEnd()
  t.ok(stuck.events.length < 101, `the stuck client did not get everything (${stuck.events.length} of 101)`)
})

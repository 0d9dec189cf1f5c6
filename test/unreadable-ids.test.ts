import { test, type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { MISSED_EVENT, type EventStream } from '../index'
import { isCursor } from '../lib/protocol/cursor-encoding'
import { startServer, type TestServer } from './helpers/server'
import { openStream, type SseClient } from './helpers/client'
import { waitUntil } from './helpers/wait'

// A Last-Event-ID that a stream of several channels cannot read as a cursor, or not all of it, is never dropped in
// silence: each channel it does not place is told `missed` (then gets all it retains), as a stream of one channel
// is for an id it does not know; the channels it places resume after their position.

const NAMES = ['a', 'b', 'c']

function routes (app: FastifyInstance): void {
  const [a, b, c] = NAMES.map((name) => app.sse.channel(name))
  app.get('/one', (request, reply) => reply.sse(a))
  app.get('/list', (request, reply) => reply.sse([a, b, c]))
  // A stream of one channel that takes another once it is open (a room joined after a lookup).
  app.get('/one-then-b', (request, reply) => {
    const stream: EventStream = reply.sse(a)
    stream.subscribe(b)
    return stream
  })
}

async function publish (app: FastifyInstance, channel: string, data: string): Promise<string> {
  return await app.sse.channel(channel).publish({ data: `${channel}:${data}` })
}

/** What the client got, channel by channel: its events' data, and `missed` where it was told so. */
function told (client: SseClient): Record<string, string[]> {
  const got: Record<string, string[]> = {}
  for (const event of client.events) {
    const channel = event.event === MISSED_EVENT ? (JSON.parse(event.data) as { channel: string }).channel : event.data.split(':')[0]
    ;(got[channel] ??= []).push(event.event === MISSED_EVENT ? 'missed' : event.data)
  }
  return got
}

async function resume (t: Test, server: TestServer, path: string, lastEventId: string,
  expected: Record<string, string[]>): Promise<SseClient> {
  const client = await openStream(t, server, path, { headers: { 'last-event-id': lastEventId } })
  const count = Object.values(expected).reduce((sum, items) => sum + items.length, 0)
  await waitUntil(client, 'change', () => (client.events.length >= count ? true : undefined), `${count} events`)
  t.same(told(client), expected)
  return client
}

test('a plain id (from when the route streamed one channel) on a list route: every channel is told missed', async (t) => {
  const server = await startServer(t, 'h2c', routes)
  const { app } = server
  const old = await openStream(t, server, '/one')
  await publish(app, 'a', '0')
  await old.waitForEvents(1)
  const plainId = old.events[0].id as string
  t.notOk(isCursor(plainId), `a plain id: ${plainId}`)
  old.close()
  await publish(app, 'a', '1')
  await publish(app, 'b', '0')
  const back = await resume(t, server, '/list', plainId, { a: ['missed', 'a:0', 'a:1'], b: ['missed', 'b:0'], c: ['missed'] })
  // Told, and placed from then on: a reconnect with its last cursor resumes exactly.
  await publish(app, 'c', '0')
  await back.waitForEvents(6)
  back.close()
  await publish(app, 'b', '1')
  await resume(t, server, '/list', back.events[5].id as string, { b: ['b:1'] })
  // By the query fallback too.
  const byQuery = await openStream(t, server, `/list?lastEventId=${plainId}`)
  await byQuery.waitForEvents(8)
  t.same(byQuery.events.filter((event) => event.event === MISSED_EVENT).length, 3, 'by the query: each channel told')
})

test('a cut cursor: the channels whose entries read resume after them; the others are told missed', async (t) => {
  const server = await startServer(t, 'h2c', routes)
  const { app } = server
  const first = await openStream(t, server, '/list')
  for (const name of NAMES) await publish(app, name, '0')
  await first.waitForEvents(3)
  const cursor = first.events[2].id as string
  first.close()
  for (const name of NAMES) await publish(app, name, '1')
  const entries = cursor.split('.')
  // Cut in the middle of the last entry (a proxy's limit, a client that keeps a prefix): it no longer reads whole.
  const cut = `${entries.slice(0, 3).join('.')}.${entries[3].slice(0, 3)}`
  t.notOk(isCursor(cut))
  const back = await openStream(t, server, '/list', { headers: { 'last-event-id': cut } })
  await back.waitForEvents(5)
  const missed = back.events.filter((event) => event.event === MISSED_EVENT).map((event) => (JSON.parse(event.data) as { channel: string }).channel)
  t.equal(missed.length, 1, 'one channel told missed: the one of the cut entry')
  const got = told(back)
  for (const name of NAMES) {
    t.same(got[name], missed.includes(name) ? ['missed', `${name}:0`, `${name}:1`] : [`${name}:1`], `${name}`)
  }
  // An id with a cursor's mark that reads as nothing at all: every channel told.
  await resume(t, server, '/list', '~0.', { a: ['missed', 'a:0', 'a:1'], b: ['missed', 'b:0', 'b:1'], c: ['missed', 'c:0', 'c:1'] })
})

test('a stream of one channel resumed by its plain id that takes a second channel: the id cannot place it, so it is told', async (t) => {
  const server = await startServer(t, 'h2c', routes)
  const { app } = server
  const id = await publish(app, 'a', '0')
  await publish(app, 'a', '1')
  await publish(app, 'b', '0')
  const back = await resume(t, server, '/one-then-b', id, { a: ['a:1'], b: ['missed', 'b:0'] })
  t.same(back.events.map((event) => event.id !== undefined && isCursor(event.id)), [false, true, true],
    'its replay of a with a\'s own ids; cursors once it carries two channels')
})

test('a stream of one channel resumed by a cut cursor that names that channel, given a second one once open: each channel once in its cursor', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/tagged', (request, reply) => reply.sse(app.sse.channel('a'), { tags: ['t'] }))
  })
  const { app } = server
  const first = await openStream(t, server, '/tagged')
  await app.sse.tagged('t').subscribe(app.sse.channel('b'))
  await publish(app, 'a', '0')
  await publish(app, 'b', '0')
  await first.waitForEvents(2)
  const cursor = first.events[1].id as string
  first.close()
  // The head and a's key alone, then an entry cut to nothing: a cursor cut short, which names a without its position.
  const [head, ofA] = cursor.split('.')
  const back = await resume(t, server, '/tagged', `${head}.${ofA.slice(0, 6)}.`, { a: ['missed', 'a:0'] })
  await app.sse.tagged('t').subscribe(app.sse.channel('b'))
  await publish(app, 'a', '1')
  await publish(app, 'b', '1')
  await back.waitForEvents(6)
  // b, not placed by a cut cursor either, is told too.
  t.same(told(back), { a: ['missed', 'a:0', 'a:1'], b: ['missed', 'b:0', 'b:1'] })
  for (const event of back.events.filter((event) => event.id !== undefined && isCursor(event.id))) {
    const keys = (event.id as string).split('.').slice(1).map((entry) => entry.slice(0, 6))
    t.equal(new Set(keys).size, keys.length, `each channel once: ${event.id as string}`)
  }
})

test('a long cursor cut short (past 256 characters): read as far as it goes, the rest told missed', async (t) => {
  const names = Array.from({ length: 40 }, (_, i) => `room-${i}`)
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/rooms', (request, reply) => reply.sse(names.map((name) => app.sse.channel(name))))
  })
  const { app } = server
  const first = await openStream(t, server, '/rooms')
  for (const name of names) await app.sse.channel(name).publish({ data: `${name}:0` })
  await first.waitForEvents(names.length)
  const cursor = first.events[names.length - 1].id as string
  first.close()
  for (const name of names) await app.sse.channel(name).publish({ data: `${name}:1` })
  // Cut in the middle of an entry's key, past 256 characters.
  const cut = cursor.slice(0, cursor.lastIndexOf('.', 300) + 3)
  t.ok(cut.length > 256 && !isCursor(cut), `a cursor of ${cursor.length} characters cut to ${cut.length}`)
  const back = await openStream(t, server, '/rooms', { headers: { 'last-event-id': cut } })
  const placed = cut.split('.').length - 2
  const count = placed + (names.length - placed) * 3
  await waitUntil(back, 'change', () => (back.events.length >= count ? true : undefined), `${count} events`)
  const missed = back.events.filter((event) => event.event === MISSED_EVENT)
  t.equal(missed.length, names.length - placed, `the ${placed} channels whole before the cut resume; every other is told missed`)
  t.same(server.logs.withMessage('ignored a last event id that is longer than 256 characters'), [])
})

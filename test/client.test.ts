import { test } from 'tap'
import { EventStreamClient, MissedEvent } from '../lib/client/index.ts'
import type { EventStream } from '../index'
import { startServer } from './helpers/server'
import { openStream } from './helpers/client'
import { TcpProxy } from './helpers/tcp-proxy'
import { waitUntil, within } from './helpers/wait'
import { ownFetch, until, watch, WAIT_MS } from './helpers/watch-client'
import { CODES, KINDS, startFeed, survives } from './helpers/refusal-feed'

// fastify-sse-h2/client in Node.js (its global fetch), against the plugin over HTTP/1.1: what the server saw is what
// the tests assert, never a sleep.

interface Seen {
  at: number
  authorization: string | undefined
  lastEventId: string | undefined
  body: unknown
}

test('headers (a function called at each connect), a POST body, and Last-Event-ID on the reconnect', async (t) => {
  const requests: Seen[] = []
  const server = await startServer(t, 'http1', (app) => {
    app.post('/ask', async (request, reply) => {
      requests.push({ at: Date.now(), authorization: request.headers.authorization, lastEventId: request.headers['last-event-id'] as string | undefined, body: request.body })
      if (request.headers.authorization === undefined) return await reply.code(401).send({ error: 'no token' })
      const from = Number(request.headers['last-event-id'] ?? 0)
      return reply.sse([{ id: String(from + 1), data: { n: from + 1 } }, { id: String(from + 2), data: { n: from + 2 } }], { retry: 20 })
    })
  })
  let tokens = 0
  const client = new EventStreamClient(`${server.origin}/ask`, {
    headers: async () => ({ authorization: `Bearer ${++tokens}` }),
    method: 'POST',
    body: JSON.stringify({ prompt: 'hello' }),
    fetch: async (url, request) => await fetch(url, { ...request, headers: { ...request.headers, 'content-type': 'application/json' } } as RequestInit) as never
  })
  t.teardown(() => client.close())
  const seen = watch(client)
  await until(seen.changes, () => (seen.events.length >= 4 ? true : undefined), '4 events')
  client.close()
  t.same(seen.events.slice(0, 4).map((event) => [event.id, event.value]), [['1', { n: 1 }], ['2', { n: 2 }], ['3', { n: 3 }], ['4', { n: 4 }]],
    'each event once, its data read back from JSON')
  t.same(requests.slice(0, 2).map(({ authorization, lastEventId, body }) => ({ authorization, lastEventId, body })), [
    { authorization: 'Bearer 1', lastEventId: undefined, body: { prompt: 'hello' } },
    { authorization: 'Bearer 2', lastEventId: '2', body: { prompt: 'hello' } }
  ], 'a fresh token at each connect, the body each time, and the last id on the reconnect')
  t.equal(seen.errors[0].message, 'the stream ended', 'an error event between the two, as EventSource fires')
  t.equal(client.readyState, EventStreamClient.CLOSED)
})

for (const status of [401, 403, 404, 204]) {
  test(`${status} ends the client, with the status, and no retry`, async (t) => {
    let asked = 0
    const server = await startServer(t, 'http1', (app) => {
      app.get('/feed', async (request, reply) => { asked++; return await reply.code(status).send() })
    })
    const client = new EventStreamClient(`${server.origin}/feed`)
    t.teardown(() => client.close())
    const seen = watch(client)
    const iterated = (async () => { for await (const event of client) t.fail(`no event: ${event.data}`) })()
    const [error] = await until(seen.changes, () => (seen.errors.length > 0 ? seen.errors : undefined), 'the error')
    t.equal(error.status, status)
    t.equal(error.retryIn, undefined, 'no retry planned')
    t.equal(client.readyState, EventStreamClient.CLOSED, 'CLOSED: it never connects again')
    await iterated.then(() => t.fail('the iterator ended'), (error) => t.match(error, { status }, 'an iterator throws it'))
    t.equal(asked, 1)
  })
}

test('backoff: Retry-After and retry: honoured, 5xx and 429 retried with a doubling delay up to max, each with jitter', async (t) => {
  const times: number[] = []
  const answers = [
    { status: 503, retryAfter: '1' }, { status: 429 }, { status: 500 }, { status: 502 }, { status: 500 }, { status: 200 }, { status: 200 }
  ]
  const server = await startServer(t, 'http1', (app) => {
    app.get('/feed', async (request, reply) => {
      const answer = answers[times.length]
      times.push(Date.now())
      if (answer === undefined || answer.status === 200) return reply.sse([{ id: String(times.length), data: 'x' }], { retry: 150 })
      if (answer.retryAfter !== undefined) reply.header('retry-after', answer.retryAfter)
      return await reply.code(answer.status).send()
    })
  })
  const client = new EventStreamClient(`${server.origin}/feed`, { retry: { min: 100, max: 400 } })
  t.teardown(() => client.close())
  const seen = watch(client)
  await until(seen.changes, () => (times.length >= 7 ? true : undefined), '7 requests')
  client.close()
  const gaps = times.slice(1).map((time, i) => time - times[i])
  // Delay d is drawn from d to 1.2 d; the machine may add a little.
  const expected = [1000, 200, 400, 400, 400, 150]
  const why = ['Retry-After: 1', '429: 2 x min', '500: 4 x min', '502: max', '500: max', 'the stream ended: its retry: 150']
  for (const [i, delay] of expected.entries()) {
    t.ok(gaps[i] >= delay && gaps[i] <= delay * 1.2 + 150, `${why[i]}: waited ${gaps[i]} ms, from ${delay} to ${delay * 1.2} (+ slack)`)
  }
  t.same(seen.errors.slice(0, 5).map((error) => error.status), [503, 429, 500, 502, 500])
  t.ok(seen.errors.every((error) => error.retryIn !== undefined), 'each error says when the next attempt is')
})

test('refused past limits (the answer an EventSource survives): an error with the code, no open, and it comes back', async (t) => {
  const streams: EventStream[] = []
  const server = await startServer(t, 'http1', (app) => {
    app.get('/hold', (request, reply) => { reply.sse() })
    app.get('/news', (request, reply) => { streams.push(reply.sse(app.sse.channel('news'))) })
  }, { plugin: { limits: { maxStreams: 1, retryAfter: 0 } } })
  const holder = await openStream(t, server, '/hold')
  const client = new EventStreamClient(`${server.origin}/news`, {
    lastEventId: await server.app.sse.channel('news').publish('before'), fetch: ownFetch(t)
  })
  t.teardown(() => client.close())
  const seen = watch(client)
  const [refused] = await until(seen.changes, () => (seen.errors.length > 0 ? seen.errors : undefined), 'the refusal')
  t.match(refused, { code: 'FST_SSE_TOO_MANY_STREAMS', status: 200 })
  t.ok((refused.retryIn ?? -1) >= 0 && (refused.retryIn ?? Infinity) <= 1200, `back within the window drawn (${String(refused.retryIn)} ms)`)
  t.equal(seen.opens, 0, 'a refusal is no open')
  t.equal(client.readyState, EventStreamClient.CONNECTING)
  const missed = await server.app.sse.channel('news').publish('while refused')
  holder.close()
  await until(seen.changes, () => (seen.events.length > 0 ? true : undefined), 'the event it missed')
  t.same(seen.events.map((event) => [event.id, event.data]), [[missed, 'while refused']], 'exactly what it missed')
  t.equal(seen.opens, 1)
})

for (const kind of KINDS) {
  test(`${kind}: refused, the client comes back by itself and receives exactly what it missed; the refusal an error with its code, not an open`, async (t) => {
    const feed = await startFeed(t, kind, 'http1')
    const client = new EventStreamClient(`${feed.origin}/news`, { fetch: ownFetch(t) })
    t.teardown(() => client.close())
    const seen = watch(client)
    await survives(t, kind, feed, {
      opened: async () => { await until(seen.changes, () => (seen.opens > 0 ? true : undefined), 'the stream to open') },
      waitFor: async (count) => await until(seen.changes,
        () => (seen.events.length >= count ? seen.events.map((event) => [event.id, event.data] as [string, string]) : undefined),
        `${count} events`)
    })
    t.ok(seen.errors.some((error) => error.code === CODES[kind]), `the refusal's error said ${CODES[kind]}`)
    t.equal(seen.opens, 2, 'two opens: the first stream, and the one it came back with')
  })
}

test('a connection that forwards nothing is noticed within about two heartbeats, and the client resumes exactly', async (t) => {
  const HEARTBEAT = 300
  const server = await startServer(t, 'http1', (app) => {
    app.get('/news', (request, reply) => reply.sse(app.sse.channel('news')))
  }, { plugin: { heartbeatInterval: HEARTBEAT } })
  const proxy = await TcpProxy.start(t, Number(new URL(server.origin).port))
  const client = new EventStreamClient(`http://127.0.0.1:${proxy.port}/news`, { retry: { min: 50, max: 100 } })
  t.teardown(() => client.close())
  const seen = watch(client)
  await until(seen.changes, () => (seen.opens > 0 ? true : undefined), 'the stream to open')
  const channel = server.app.sse.channel('news')
  const ids = [await channel.publish('one')]
  await until(seen.changes, () => (seen.events.length >= 1 ? true : undefined), 'the first event')

  proxy.freeze()
  const frozenAt = Date.now()
  ids.push(await channel.publish('two'))
  const [silence] = await until(seen.changes, () => (seen.errors.length > 0 ? seen.errors : undefined), 'the silence to be noticed')
  const noticedAfter = Date.now() - frozenAt
  t.match(silence, { message: 'the connection was lost', error: { message: /nothing received for \d+ ms, twice the server's heartbeat/ } })
  t.ok(noticedAfter <= 2 * HEARTBEAT + HEARTBEAT + 500, `noticed ${noticedAfter} ms after the freeze (heartbeat ${HEARTBEAT} ms)`)
  await until(seen.changes, () => (seen.events.length >= 2 ? true : undefined), 'the event sent into the frozen connection')
  ids.push(await channel.publish('three'))
  await until(seen.changes, () => (seen.events.length >= 3 ? true : undefined), 'a live one')
  t.same(seen.events.map((event) => [event.id, event.data]), [[ids[0], 'one'], [ids[1], 'two'], [ids[2], 'three']],
    'resumed with Last-Event-ID: nothing lost, nothing twice')
  t.ok(proxy.pipes.length >= 2, 'on a new connection')
})

test('a quiet stream whose heartbeats come is not taken for dead, however long it stays quiet', async (t) => {
  const HEARTBEAT = 300
  const server = await startServer(t, 'http1', (app) => {
    app.get('/news', (request, reply) => reply.sse(app.sse.channel('news')))
  }, { plugin: { heartbeatInterval: HEARTBEAT } })
  const proxy = await TcpProxy.start(t, Number(new URL(server.origin).port))
  const client = new EventStreamClient(`http://127.0.0.1:${proxy.port}/news`, { fetch: ownFetch(t) })
  t.teardown(() => client.close())
  const seen = watch(client)
  await until(seen.changes, () => (seen.opens > 0 ? true : undefined), 'the stream to open')
  const [pipe] = proxy.pipes
  const from = pipe.toClient
  // Nothing but heartbeats for three times the silence the client tolerates.
  await waitUntil(proxy, 'toClient', () => (pipe.toClient - from >= 6 ? true : undefined), 'six heartbeats', WAIT_MS)
  const id = await server.app.sse.channel('news').publish('still here')
  await until(seen.changes, () => (seen.events.length > 0 ? true : undefined), 'the event')
  t.same(seen.events.map((event) => [event.id, event.data]), [[id, 'still here']])
  t.same([seen.opens, seen.errors.length, proxy.pipes.length], [1, 0, 1], 'on the one connection it opened: no error, no reconnect')
})

test('a storage keeps the last id: a new client (a reloaded page) resumes exactly', async (t) => {
  const server = await startServer(t, 'http1', (app) => {
    app.get('/news', (request, reply) => reply.sse(app.sse.channel('news')))
  })
  const stored = new Map<string, string>()
  const storage = { getItem: (key: string) => stored.get(key) ?? null, setItem: (key: string, value: string) => { stored.set(key, value) } }
  const channel = server.app.sse.channel('news')
  const fetch = ownFetch(t)
  const first = new EventStreamClient(`${server.origin}/news`, { storage, fetch })
  const seen = watch(first)
  await until(seen.changes, () => (seen.opens > 0 ? true : undefined), 'the stream to open')
  const ids = [await channel.publish('one'), await channel.publish('two')]
  await until(seen.changes, () => (seen.events.length >= 2 ? true : undefined), 'two events')
  first.close()
  t.same([...stored.values()], [ids[1]], 'the last id, under the stream\'s URL')
  ids.push(await channel.publish('three'))

  const again = new EventStreamClient(`${server.origin}/news`, { storage, fetch })
  t.teardown(() => again.close())
  t.equal(again.lastEventId, ids[1], 'read back at once')
  const next: string[] = []
  for await (const event of again) {
    next.push(event.data)
    if (next.length === 1) break
  }
  t.same(next, ['three'], 'exactly the one published while no page was open')
  t.equal(again.readyState, EventStreamClient.CLOSED, 'leaving the loop closed the client')
})

test('missed: parsed into { channel, oldestId }; binary types handed over as bytes', async (t) => {
  const server = await startServer(t, 'http1', (app) => {
    app.get('/news', (request, reply) => reply.sse(app.sse.channel('news')))
    app.get('/bytes', (request, reply) => reply.sse([{ event: 'chunk', data: Buffer.from([0, 1, 2, 250, 255]) }, { data: { n: 1 } }]))
  }, { plugin: { historySize: 2 } })
  const channel = server.app.sse.channel('news')
  for (const n of [1, 2, 3]) await channel.publish(`event ${n}`)
  const fetch = ownFetch(t)
  const client = new EventStreamClient<{ message: string }>(`${server.origin}/news`, { lastEventId: 'too-old', fetch })
  t.teardown(() => client.close())
  const missed = await within(new Promise<MissedEvent>((resolve) => { client.addEventListener('missed', resolve) }),
    'the missed event', WAIT_MS)
  t.ok(missed instanceof MissedEvent, 'a MissedEvent, the class the package exports')
  t.match(missed, { type: 'missed', channel: 'news', oldestId: /./ })

  const bytes = new EventStreamClient<{ chunk: Uint8Array, message: { n: number } }>(`${server.origin}/bytes`, { binary: ['chunk'], fetch })
  t.teardown(() => bytes.close())
  const values: unknown[] = []
  for await (const event of bytes) {
    values.push(event.value)
    if (values.length === 2) break
  }
  t.same(values, [new Uint8Array([0, 1, 2, 250, 255]), { n: 1 }])
})

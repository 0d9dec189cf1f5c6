import { test } from 'tap'
import { EventEmitter, once } from 'node:events'
import { EventStreamClient, StreamErrorEvent, StreamEvent, type ClientFetch } from '../lib/client/index.ts'
import type { RouteHandlerMethod } from 'fastify'
import type { EventStream } from '../index'
import { startServer } from './helpers/server'
import { openStream } from './helpers/client'
import { signalled, within } from './helpers/wait'
import { ownFetch, until, watch, WAIT_MS, type TestFetch } from './helpers/watch-client'

// fastify-sse-h2/client at its edges, in Node.js against the plugin over HTTP/1.1: the handler properties, a storage
// that refuses to store, Retry-After as a date, close() at every moment, answers that are not a stream, a fetch of
// one's own that misbehaves, a refusal whose header is hidden, a reconnect that is never answered.

/** What `fetch` shows a page for a response of another origin whose CORS exposes no header (Fetch: safelisted). */
const CORS_SAFELISTED = new Set(['cache-control', 'content-language', 'content-length', 'content-type', 'expires', 'last-modified', 'pragma'])

/** A fetch of one's own that does not pass the abort signal on (a wrapper that forgot it). */
function ignoringSignal (fetch: TestFetch): ClientFetch {
  return async (url, { signal, ...request }) => await fetch(url, request)
}

async function ended (stream: EventStream, what: string): Promise<void> {
  if (stream.signal.aborted) return
  await within(once(stream.signal, 'abort'), what, WAIT_MS)
}

test('onopen, onmessage, onerror: read back as set, the last one set runs, an object with handleEvent runs, anything else is null', async (t) => {
  let requests = 0
  const server = await startServer(t, 'http1', (app) => {
    app.get('/feed', (request, reply) => {
      if (++requests === 1) return reply.sse([{ id: '1', data: 'a' }], { retry: 20 })
      return reply.sse(async function * ({ signal }) {
        yield { id: '2', data: 'b' }
        await once(signal, 'abort')
      })
    })
  })
  const client = new EventStreamClient(`${server.origin}/feed`, { fetch: ownFetch(t) })
  t.teardown(() => client.close())
  const calls: string[] = []
  const changes = new EventEmitter()
  const note = (what: string): void => { calls.push(what); changes.emit('change') }
  const messages: string[] = []
  client.addEventListener('message', (event) => { messages.push(event.data); changes.emit('change') })

  const first = (): void => note('the first onopen')
  client.onopen = first
  t.equal(client.onopen, first, 'onopen reads back as set')
  const onopen = (): void => note('open')
  client.onopen = onopen
  t.equal(client.onopen, onopen, 'replaced')
  const onmessage = { handleEvent: (event: StreamEvent) => note(`message ${event.data}`) }
  client.onmessage = onmessage
  t.equal(client.onmessage, onmessage, 'an object with handleEvent')
  let thisWas: unknown
  const onerror = function (this: EventStreamClient, event: StreamErrorEvent): void {
    thisWas = this
    note(`error: ${event.message}`)
    // Both gone before the next connection.
    client.onmessage = null
    client.onerror = 'not a function' as never
  }
  client.onerror = onerror
  t.equal(client.onerror, onerror)

  await until(changes, () => (messages.length >= 2 && calls.length >= 4 ? true : undefined), 'two connections')
  t.same(calls, ['open', 'message a', 'error: the stream ended', 'open'],
    'the last handler set runs, once per event; none after it was set to null')
  t.same(messages, ['a', 'b'], 'the second message reached the listener added with addEventListener')
  t.equal(thisWas, client, 'a handler is called with the client as this, as EventSource calls it')
  t.equal(client.onmessage, null)
  t.equal(client.onerror, null, 'anything but a function or an object reads back as null, as on EventSource')
  t.equal(client.onopen, onopen)
})

test('close() in onerror (how a page stops an EventSource from retrying): no reconnect', async (t) => {
  const server = await startServer(t, 'http1', (app) => {
    app.get('/ends', (request, reply) => reply.sse([{ id: '1', data: 'x' }], { retry: 20 }))
    app.get('/control', (request, reply) => reply.sse([{ id: '1', data: 'y' }], { retry: 200 }))
  })
  const own = ownFetch(t)
  const fetches = { stopped: 0, control: 0 }
  const changes = new EventEmitter()
  const counted = (name: keyof typeof fetches): ClientFetch => async (url, request) => {
    fetches[name]++
    changes.emit('change')
    return await own(url, request)
  }
  const stopped = new EventStreamClient(`${server.origin}/ends`, { fetch: counted('stopped') })
  t.teardown(() => stopped.close())
  const errors: StreamErrorEvent[] = []
  stopped.onerror = (event) => {
    errors.push(event)
    stopped.close()
    changes.emit('change')
  }
  await until(changes, () => (errors.length > 0 ? true : undefined), 'the stream to end')
  t.equal(stopped.readyState, EventStreamClient.CLOSED)
  t.ok(errors[0] instanceof StreamErrorEvent)
  t.ok((errors[0].retryIn ?? Infinity) <= 24, `it was to come back after ${String(errors[0].retryIn)} ms`)
  // A client told to wait ten times longer comes back: by then, the closed one would have.
  const control = new EventStreamClient(`${server.origin}/control`, { fetch: counted('control') })
  t.teardown(() => control.close())
  await until(changes, () => (fetches.control >= 2 ? true : undefined), 'the control client to reconnect')
  t.equal(fetches.stopped, 1, 'the closed client never asked again')
})

test('a storage that refuses to store (full, or forbidden as in private browsing): the stream goes on', async (t) => {
  const server = await startServer(t, 'http1', (app) => {
    app.get('/news', (request, reply) => reply.sse(app.sse.channel('news')))
  })
  let attempts = 0
  const storage = {
    getItem: () => null,
    setItem: () => {
      attempts++
      throw new DOMException('the quota has been exceeded', 'QuotaExceededError')
    }
  }
  const client = new EventStreamClient(`${server.origin}/news`, { storage, fetch: ownFetch(t) })
  t.teardown(() => client.close())
  const seen = watch(client)
  await until(seen.changes, () => (seen.opens > 0 ? true : undefined), 'the stream to open')
  const channel = server.app.sse.channel('news')
  const ids = [await channel.publish('one'), await channel.publish('two')]
  await until(seen.changes, () => (seen.events.length >= 2 ? true : undefined), 'two events')
  t.same(seen.events.map((event) => [event.id, event.data]), [[ids[0], 'one'], [ids[1], 'two']], 'every event, in order')
  t.ok(attempts >= 1, `it tried to store the id (${attempts} times)`)
  t.same(seen.errors, [], 'no error event: a lost resume after a reload is no failure of the stream')
  t.equal(client.readyState, EventStreamClient.OPEN)
  t.equal(client.lastEventId, ids[1], 'the last id is still kept in memory, for a reconnect')
})

test('Retry-After as an HTTP date is honoured; one that cannot be read leaves the backoff', async (t) => {
  const times: number[] = []
  const server = await startServer(t, 'http1', (app) => {
    app.get('/feed', async (request, reply) => {
      times.push(Date.now())
      if (times.length === 1) return await reply.code(503).header('retry-after', new Date(Date.now() + 2000).toUTCString()).send()
      if (times.length === 2) return await reply.code(503).header('retry-after', 'soon').send()
      return reply.sse([{ id: '1', data: 'x' }])
    })
  })
  const client = new EventStreamClient(`${server.origin}/feed`, { retry: { min: 100, max: 400 }, fetch: ownFetch(t) })
  t.teardown(() => client.close())
  const seen = watch(client)
  await until(seen.changes, () => (seen.events.length > 0 ? true : undefined), 'the stream, third time')
  const [date, unreadable] = seen.errors
  // The date has whole seconds: 2 s ahead is read as 1 to 2 s, then up to a fifth more.
  t.ok((date.retryIn ?? 0) >= 900 && (date.retryIn ?? Infinity) <= 2400, `the date: ${String(date.retryIn)} ms, not min's 100`)
  t.ok(times[1] - times[0] >= (date.retryIn ?? 0) - 20, `and it waited that long (${times[1] - times[0]} ms)`)
  t.ok((unreadable.retryIn ?? 0) >= 200 && (unreadable.retryIn ?? Infinity) <= 240,
    `"soon": the backoff's second step, 2 x min (${String(unreadable.retryIn)} ms)`)
})

test('close() in the turn the client was made: neither headers() nor a request', async (t) => {
  let calls = 0
  const client = new EventStreamClient('http://127.0.0.1:9/feed', {
    headers: () => { calls++; return {} },
    fetch: async () => { calls++; throw new Error('no request should be made') }
  })
  const seen = watch(client)
  client.close()
  // The client starts in the microtasks of this turn: all of them have run at the next one.
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(calls, 0, 'headers() not called, no request')
  t.same(seen.errors, [], 'no error event')
  t.equal(client.readyState, EventStreamClient.CLOSED)
})

test('close() while headers() is on its way: no request is made', async (t) => {
  const asked = signalled()
  let release: (headers: Record<string, string>) => void = () => {}
  let fetches = 0
  const client = new EventStreamClient('http://127.0.0.1:9/feed', {
    headers: async () => {
      asked.resolve()
      return await new Promise((resolve) => { release = resolve })
    },
    fetch: async () => { fetches++; throw new Error('no request should be made') }
  })
  const seen = watch(client)
  await within(asked.promise, 'headers() to be called')
  client.close()
  release({ authorization: 'Bearer late' })
  // The client goes on in the microtasks of this turn: all of them have run at the next one.
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(fetches, 0, 'no request')
  t.same(seen.errors, [], 'no error event')
  t.equal(client.readyState, EventStreamClient.CLOSED)
})

test('a fetch of one\'s own that ignores the abort signal: close() still lets go of the stream, whenever it is called', async (t) => {
  const streams = new Map<string, EventStream>()
  const opened = new EventEmitter()
  const entered = signalled()
  const gate = signalled()
  const server = await startServer(t, 'http1', (app) => {
    const route = (name: string): RouteHandlerMethod => (request, reply): void => {
      streams.set(name, reply.sse(app.sse.channel(name)))
      opened.emit('change')
    }
    app.get('/late', { preHandler: async () => { entered.resolve(); await gate.promise } }, route('late'))
    app.get('/news', route('news'))
  })
  t.teardown(() => gate.resolve())
  const fetch = ignoringSignal(ownFetch(t))
  const streamOf = async (name: string): Promise<EventStream> => await until(opened, () => streams.get(name), `the ${name} stream`)

  // The request is on its way when the page closes the client; the server answers afterwards.
  const late = new EventStreamClient(`${server.origin}/late`, { fetch })
  const lateSeen = watch(late)
  await within(entered.promise, 'the request to reach the route')
  late.close()
  gate.resolve()
  await ended(await streamOf('late'), 'the server to see the late stream end')
  t.pass('the response that came after close() was let go of: the server saw its stream end')
  t.same([lateSeen.opens, lateSeen.events.length, lateSeen.errors.length], [0, 0, 0], 'no open, no event, no error')
  t.equal(late.readyState, EventStreamClient.CLOSED)

  // A listener closes the client in the middle of the stream.
  const news = new EventStreamClient(`${server.origin}/news`, { fetch })
  const newsSeen = watch(news)
  news.onmessage = (event) => { if (event.data === 'stop') news.close() }
  await until(newsSeen.changes, () => (newsSeen.opens > 0 ? true : undefined), 'the news stream to open')
  const channel = server.app.sse.channel('news')
  await channel.publish('stop')
  await ended(await streamOf('news'), 'the server to see the news stream end')
  t.pass('closed by a listener: the server saw the stream end')
  t.same(newsSeen.events.map((event) => event.data), ['stop'])
  t.same(newsSeen.errors, [], 'no error event')
})

test('a 200 that is not an event stream (a login page, a proxy\'s page, no content type): the client ends, with no retry', async (t) => {
  const asked: Record<string, number> = { '/login': 0, '/bare': 0 }
  const server = await startServer(t, 'http1', (app) => {
    app.get('/login', async (request, reply) => {
      asked['/login']++
      return await reply.type('text/html').send('<form>who are you?</form>')
    })
    app.get('/bare', (request, reply) => {
      asked['/bare']++
      reply.hijack()
      reply.raw.writeHead(200)
      reply.raw.end('data: not announced as a stream\n\n')
    })
  })
  for (const path of ['/login', '/bare']) {
    const client = new EventStreamClient(`${server.origin}${path}`, { fetch: ownFetch(t) })
    t.teardown(() => client.close())
    const seen = watch(client)
    const [error] = await until(seen.changes, () => (seen.errors.length > 0 ? seen.errors : undefined), `the error of ${path}`)
    t.ok(error instanceof StreamErrorEvent)
    t.match(error, { message: 'the response is not an event stream', status: 200, retryIn: undefined }, path)
    t.equal(client.readyState, EventStreamClient.CLOSED)
    t.same([seen.opens, seen.events.length, asked[path]], [0, 0, 1], `${path}: asked once, no open, no event`)
  }
})

test('a fetch of one\'s own that answers what is not a response: the client ends with an error saying so, an iterator throws it', async (t) => {
  const client = new EventStreamClient('http://127.0.0.1:9/feed', { fetch: async () => undefined as never })
  const seen = watch(client)
  const iterated = (async () => { for await (const event of client) t.fail(`no event: ${event.data}`) })()
  const [error] = await until(seen.changes, () => (seen.errors.length > 0 ? seen.errors : undefined), 'the error')
  t.match(error, { message: 'the client failed', retryIn: undefined })
  t.ok(error.error instanceof TypeError, `what failed: ${String(error.error)}`)
  t.equal(client.readyState, EventStreamClient.CLOSED)
  await iterated.then(() => t.fail('the iterator ended'), (thrown: Error) => t.match(thrown.message, /the client failed/, 'the iterator throws'))
})

test('a headers() that throws: an error event, and the next attempt asks again (a token refreshed)', async (t) => {
  const authorizations: Array<string | undefined> = []
  const server = await startServer(t, 'http1', (app) => {
    app.get('/private', (request, reply) => {
      authorizations.push(request.headers.authorization)
      return reply.sse(async function * ({ signal }) {
        yield { id: '1', data: 'welcome' }
        await once(signal, 'abort')
      })
    })
  })
  let calls = 0
  const client = new EventStreamClient(`${server.origin}/private`, {
    headers: () => {
      if (++calls === 1) throw new Error('the token service is away')
      return { authorization: `Bearer ${calls}` }
    },
    retry: { min: 50, max: 100 },
    fetch: ownFetch(t)
  })
  t.teardown(() => client.close())
  const seen = watch(client)
  await until(seen.changes, () => (seen.events.length > 0 ? true : undefined), 'the stream')
  t.match(seen.errors, [{ message: 'the request failed', error: { message: 'the token service is away' } }])
  t.ok((seen.errors[0].retryIn ?? Infinity) <= 60, `retried after min (${String(seen.errors[0].retryIn)} ms)`)
  t.same(authorizations, ['Bearer 2'], 'one request, with the token of the second call')
})

test('a relative URL is resolved against the page\'s location, as EventSource resolves it; events carry its origin', async (t) => {
  const server = await startServer(t, 'http1', (app) => {
    app.get('/app/news', (request, reply) => reply.sse([{ id: '1', data: 'here' }]))
  })
  const global = globalThis as { location?: { href: string } }
  global.location = { href: `${server.origin}/app/page.html` }
  t.teardown(() => { delete global.location })
  const client = new EventStreamClient('news', { fetch: ownFetch(t) })
  t.teardown(() => client.close())
  t.equal(client.url, `${server.origin}/app/news`)
  const seen = watch(client)
  const [event] = await until(seen.changes, () => (seen.events.length > 0 ? seen.events : undefined), 'the event')
  t.ok(event instanceof StreamEvent)
  t.match(event, { data: 'here', origin: server.origin })
})

test('an iterator is itself iterable (one event read with next(), a loop for the rest); close() ends a loop that waits', async (t) => {
  const server = await startServer(t, 'http1', (app) => {
    app.get('/news', (request, reply) => reply.sse(app.sse.channel('news')))
  })
  const client = new EventStreamClient(`${server.origin}/news`, { fetch: ownFetch(t) })
  t.teardown(() => client.close())
  const seen = watch(client)
  const events = client[Symbol.asyncIterator]()
  await until(seen.changes, () => (seen.opens > 0 ? true : undefined), 'the stream to open')
  const channel = server.app.sse.channel('news')
  await channel.publish('first')
  const first = await within(events.next(), 'the first event', WAIT_MS)
  t.equal(first.value?.data, 'first')
  const rest: string[] = []
  const changes = new EventEmitter()
  const loop = (async () => {
    for await (const event of events) {
      rest.push(event.data)
      changes.emit('change')
    }
  })()
  await channel.publish('second')
  await channel.publish('third')
  await until(changes, () => (rest.length >= 2 ? true : undefined), 'the loop to get two more')
  client.close()
  await within(loop, 'the loop to end once the client closed', WAIT_MS)
  t.same(rest, ['second', 'third'], 'nothing lost between next() and the loop; the loop ended with close()')
})

test('refused while the sse-refused header is hidden (a page of another origin whose CORS does not expose it): the comment says it', async (t) => {
  const server = await startServer(t, 'http1', (app) => {
    app.get('/hold', (request, reply) => { reply.sse() })
    app.get('/news', (request, reply) => { reply.sse(app.sse.channel('news')) })
  }, { plugin: { limits: { maxStreams: 1, retryAfter: 0 } } })
  const holder = await openStream(t, server, '/hold')
  const own = ownFetch(t)
  const fetch: ClientFetch = async (url, request) => {
    const response = await own(url, request) as Response
    const headers = { get: (name: string) => (CORS_SAFELISTED.has(name.toLowerCase()) ? response.headers.get(name) : null) }
    return { status: response.status, body: response.body, headers }
  }
  const client = new EventStreamClient(`${server.origin}/news`, { lastEventId: await server.app.sse.channel('news').publish('before'), fetch })
  t.teardown(() => client.close())
  const seen = watch(client)
  const [refused] = await until(seen.changes, () => (seen.errors.length > 0 ? seen.errors : undefined), 'the refusal')
  t.match(refused, { message: 'the server refused the stream: FST_SSE_TOO_MANY_STREAMS', code: 'FST_SSE_TOO_MANY_STREAMS', status: 200 })
  t.ok((refused.retryIn ?? Infinity) <= 1200, `back within the window drawn (${String(refused.retryIn)} ms)`)
  const missed = await server.app.sse.channel('news').publish('while refused')
  holder.close()
  await until(seen.changes, () => (seen.events.length > 0 ? true : undefined), 'the event it missed')
  t.same(seen.events.map((event) => [event.id, event.data]), [[missed, 'while refused']], 'exactly what it missed')
})

test('a reconnect that is never answered is given up after twice the heartbeat interval, and tried again: nothing lost', async (t) => {
  const HEARTBEAT = 300
  const streams: EventStream[] = []
  const stalled = signalled()
  const release = signalled()
  let stallNext = false
  const server = await startServer(t, 'http1', (app) => {
    app.get('/news', {
      preHandler: async () => {
        if (!stallNext) return
        stallNext = false
        stalled.resolve()
        await release.promise
      }
    }, (request, reply) => { streams.push(reply.sse(app.sse.channel('news'))) })
  }, { plugin: { heartbeatInterval: HEARTBEAT } })
  t.teardown(() => release.resolve())
  const client = new EventStreamClient(`${server.origin}/news`, { retry: { min: 50, max: 100 }, fetch: ownFetch(t) })
  t.teardown(() => client.close())
  const seen = watch(client)
  await until(seen.changes, () => (seen.opens > 0 ? true : undefined), 'the stream to open')
  const channel = server.app.sse.channel('news')
  const ids = [await channel.publish('one')]
  await until(seen.changes, () => (seen.events.length >= 1 ? true : undefined), 'the first event')

  // The instance takes the reconnect and never answers it (stuck, or a connection that died with the last stream).
  stallNext = true
  streams[0].close()
  await within(stalled.promise, 'the reconnect to be held', WAIT_MS)
  const stalledAt = Date.now()
  ids.push(await channel.publish('two'))
  const gaveUp = await until(seen.changes, () => seen.errors.find((error) => error.message === 'the request failed'), 'the client to give up')
  const after = Date.now() - stalledAt
  t.match(gaveUp.error, { message: `no response for ${2 * HEARTBEAT} ms, twice the server's heartbeat interval` })
  t.ok(after <= 3 * HEARTBEAT + 500, `gave up ${after} ms after the request (heartbeat ${HEARTBEAT} ms)`)
  await until(seen.changes, () => (seen.events.length >= 2 ? true : undefined), 'the event published meanwhile')
  t.same(seen.events.map((event) => [event.id, event.data]), [[ids[0], 'one'], [ids[1], 'two']], 'resumed exactly, on the next attempt')
})

test('value: JSON read back, a string the server sent as it is stays text, bytes stay bytes', async (t) => {
  const server = await startServer(t, 'http1', (app) => {
    app.get('/feed', (request, reply) => reply.sse([
      { data: { n: 1 } }, 'hello', { data: 'not { json' }, { event: 'done', data: '' }
    ]))
  })
  const client = new EventStreamClient(`${server.origin}/feed`, { fetch: ownFetch(t) })
  t.teardown(() => client.close())
  const values: unknown[] = []
  client.addEventListener('message', (event) => { values.push((event as StreamEvent).value) })
  await within(new Promise((resolve) => client.addEventListener('done', resolve)), 'the last event', WAIT_MS)
  client.close()
  t.same(values, [{ n: 1 }, 'hello', 'not { json'], 'no SyntaxError for text')
})

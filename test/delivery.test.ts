import { test } from 'tap'
import { PROTOCOLS, startServer } from './helpers/server'
import { connectSession, openStream } from './helpers/client'
import { ERROR, WARN } from './helpers/logs'
import { MISSED_EVENT, type EventStream } from '../index'

// What the delivery core promises, each from the way an app would break it, over real servers and clients.

for (const protocol of PROTOCOLS) {
  test(`${protocol}: a final event published, then the channel or the stream closed in the same tick, arrives before the end`,
    async (t) => {
      const handles: EventStream[] = []
      const server = await startServer(t, protocol, (app) => {
        app.get('/news', (request, reply) => { handles.push(reply.sse(app.sse.channel('news'))) })
        app.get('/own', (request, reply) => { handles.push(reply.sse(app.sse.channel('own'))) })
      })
      const byChannel = await openStream(t, server, '/news')
      const byHandle = await openStream(t, server, '/own')
      const news = server.app.sse.channel('news')
      await news.publish('first')
      await news.publish({ event: 'done', data: 'bye' })
      await news.close()
      await server.app.sse.channel('own').publish('only')
      handles[1].send('then mine')
      handles[1].close()
      await byChannel.waitForEnd()
      await byHandle.waitForEnd()
      t.same(byChannel.events.map((event) => [event.event, event.data]), [[undefined, 'first'], ['done', 'bye']])
      t.same(byHandle.events.map((event) => event.data), ['only', 'then mine'])
    })
}

test('a resume while more events than the history holds are published in one tick: missed, then in order', async (t) => {
  let burst: Array<Promise<string>> = []
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/news', (request, reply) => {
      // Another part of the app publishes a burst in the very tick this client resumes.
      const news = app.sse.channel('news')
      burst = Array.from({ length: 20 }, (_, i) => news.publish(String(i)))
      reply.sse(news)
    })
  }, { plugin: { historySize: 5 } })
  const news = server.app.sse.channel('news')
  const seen = await news.publish('seen')
  const client = await openStream(t, server, '/news', { headers: { 'last-event-id': seen } })
  const ids = await Promise.all(burst)
  await news.publish('after')
  await client.waitForEvents(1 + 5 + 1)
  const [missed, ...events] = client.events
  t.equal(missed.event, MISSED_EVENT)
  t.same(events.map((event) => event.data), ['15', '16', '17', '18', '19', 'after'], 'the retained ones, oldest first, then live')
  t.same(events.slice(0, 5).map((event) => event.id), ids.slice(15))
  for (let i = 1; i < events.length; i++) t.ok(BigInt(events[i].id as string) > BigInt(events[i - 1].id as string), 'ids only increase')
})

test('filters see each event as it was published, though the app reuses its message object', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/user/:name', (request, reply) => reply.sse(app.sse.channel('notes'), {
      filter: (event) => (event.data as { to: string }).to === (request.params as { name: string }).name
    }))
  })
  const alice = await openStream(t, server, '/user/alice')
  const bob = await openStream(t, server, '/user/bob')
  const notes = server.app.sse.channel('notes')
  const message: { data: { to: string, text: string } } = { data: { to: '', text: '' } }
  const rows = [['alice', 'a1'], ['bob', 'b1'], ['alice', 'a2'], ['bob', 'b2']]
  for (const [to, text] of rows) {
    message.data.to = to
    message.data.text = text
    await notes.publish(message)
  }
  message.data.to = 'bob'
  await alice.waitForEvents(2)
  await bob.waitForEvents(2)
  t.same(alice.events.map((event) => JSON.parse(event.data).text), ['a1', 'a2'])
  t.same(bob.events.map((event) => JSON.parse(event.data).text), ['b1', 'b2'])
  // A late subscriber's replay is filtered on the same snapshots.
  const lateBob = await openStream(t, server, '/user/bob', { headers: { 'last-event-id': 'never-sent' } })
  await lateBob.waitForEvents(3)
  t.same(lateBob.events.slice(1).map((event) => JSON.parse(event.data).text), ['b1', 'b2'])
})

for (const protocol of PROTOCOLS) {
  test(`${protocol}: a client reading at full speed is not dropped for a replay or an event bigger than maxBufferedBytes`,
    async (t) => {
      const handles = new Map<string, EventStream>()
      const big = 'x'.repeat(200_000)
      const server = await startServer(t, protocol, (app) => {
        app.get('/replayed', (request, reply) => {
          const stream = reply.sse(app.sse.channel('history'))
          // Right after the replay, the route's own writes: the replay is not what this client is behind by.
          stream.comment('hello')
          stream.send('mine')
          handles.set('replayed', stream)
        })
        app.get('/big', (request, reply) => {
          const stream = reply.sse()
          handles.set('big', stream)
          stream.send(big)
          stream.send('after it')
        })
      }, { plugin: { maxBufferedBytes: 64 * 1024 }, logLevel: 'warn' })
      const history = server.app.sse.channel('history')
      for (let i = 0; i < 40; i++) await history.publish(`${i} ${'y'.repeat(4000)}`)
      // A browser's flow-control windows, so that what the client reads is not held back by Node's defaults.
      const session = protocol.startsWith('h2') ? await connectSession(t, server, { windowSize: 8 * 1024 * 1024 }) : undefined
      const replayed = await openStream(t, server, '/replayed', { session, headers: { 'last-event-id': 'never-sent' } })
      const bigOne = await openStream(t, server, '/big', { session })
      await replayed.waitForEvents(1 + 40 + 1)
      await bigOne.waitForEvents(2)
      t.equal(replayed.events.at(-1)?.data, 'mine')
      t.same(bigOne.events.map((event) => event.data.length), [big.length, 'after it'.length])
      t.equal(handles.get('replayed')?.closed, false)
      t.equal(handles.get('big')?.closed, false)
      t.same(server.logs.atLeast(WARN), [], 'nobody was dropped')
    })
}

test('a serializer that throws or returns what is not text fails with a coded error; other streams go on', async (t) => {
  const failures = new Map<string, unknown>()
  const serializers: Record<string, (value: unknown) => string> = {
    throws: () => { throw new RangeError('cannot serialize') },
    // eslint-disable-next-line no-throw-literal
    throwsString: () => { throw 'no' },
    undefined: () => undefined as unknown as string,
    number: () => 42 as unknown as string,
    bigint: JSON.stringify
  }
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/push/:kind', (request, reply) => {
      const { kind } = request.params as { kind: string }
      const stream = reply.sse(undefined, { serializer: serializers[kind] })
      try {
        stream.send({ data: kind === 'bigint' ? 1n : { n: 1 } })
      } catch (error) {
        failures.set(kind, error)
      }
      stream.send('still open')
    })
    app.get('/pull', (request, reply) => reply.sse([{ data: { n: 1 } }], { serializer: serializers.throws }))
    app.get('/fine', (request, reply) => reply.sse(['fine']))
  })
  for (const kind of Object.keys(serializers)) {
    const client = await openStream(t, server, `/push/${kind}`)
    await client.waitForEvents(1)
    t.same(client.events.map((event) => event.data), ['still open'], `${kind}: nothing of the bad event was written`)
  }
  t.match(failures.get('throws'), { code: 'FST_SSE_SERIALIZER_FAILED', message: /cannot serialize/, cause: { name: 'RangeError' } })
  t.match(failures.get('bigint'), { code: 'FST_SSE_SERIALIZER_FAILED', message: /BigInt/ })
  t.match(failures.get('throwsString'), { code: 'FST_SSE_SERIALIZER_FAILED', message: /'no'/, cause: 'no' })
  t.match(failures.get('undefined'), { code: 'FST_SSE_INVALID_SERIALIZED' })
  t.match(failures.get('number'), { code: 'FST_SSE_INVALID_SERIALIZED' })
  const pulled = await openStream(t, server, '/pull')
  await pulled.waitForEnd()
  t.same(pulled.events, [])
  const logged = await server.logs.waitFor((record) => record.level === ERROR, 'the failed source')
  t.match(logged, { err: { code: 'FST_SSE_SERIALIZER_FAILED' } })
  const fine = await openStream(t, server, '/fine')
  await fine.waitForEnd()
  t.same(fine.events.map((event) => event.data), ['fine'], 'the server answers every other request')
  const published = server.app.sse.channel('c')
  await t.rejects(published.publish({ data: 1n }), { code: 'FST_SSE_SERIALIZER_FAILED' })
})

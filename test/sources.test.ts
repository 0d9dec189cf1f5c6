import { test } from 'tap'
import { Readable } from 'node:stream'
import { PROTOCOLS, startServer } from './helpers/server'
import { openStream } from './helpers/client'
import { signalled, within } from './helpers/wait'
import { WARN } from './helpers/logs'
import type { SseMessage, SseSourceContext } from '../index'

const datas = (events: Array<{ data: string }>): string[] => events.map((event) => event.data)

for (const protocol of PROTOCOLS) {
  test(`${protocol}: every kind of source streams its events in order`, async (t) => {
    const contexts: SseSourceContext[] = []
    const server = await startServer(t, protocol, (app) => {
      app.get('/array', (request, reply) => reply.sse(['a', { data: 'b' }]))
      app.get('/generator', (request, reply) => reply.sse((function * () { yield 'a'; yield 'b' })()))
      app.get('/async-generator', (request, reply) => reply.sse((async function * () { yield 'a'; yield 'b' })()))
      app.get('/function', (request, reply) => reply.sse((context) => {
        contexts.push(context)
        return [`after ${String(context.lastEventId)}`]
      }))
      app.get('/async-generator-function', (request, reply) => reply.sse(async function * ({ lastEventId }) {
        yield `after ${String(lastEventId)}`
      }))
      app.get('/readable-objects', (request, reply) => reply.sse(Readable.from([{ id: '1', data: 'a' }, 'b'])))
      app.get('/web-stream', (request, reply) => reply.sse(new ReadableStream<SseMessage>({
        start (controller) {
          controller.enqueue('a')
          controller.enqueue({ data: 'b' })
          controller.close()
        }
      })))
    })
    const expected: Record<string, string[]> = {
      '/array': ['a', 'b'],
      '/generator': ['a', 'b'],
      '/async-generator': ['a', 'b'],
      '/function': ['after 7'],
      '/async-generator-function': ['after 7'],
      '/readable-objects': ['a', 'b'],
      '/web-stream': ['a', 'b']
    }
    for (const [path, want] of Object.entries(expected)) {
      const client = await openStream(t, server, path, { headers: { 'last-event-id': '7' } })
      await client.waitForEnd()
      t.same(datas(client.events), want, path)
    }
    t.equal(contexts.length, 1)
    t.equal(contexts[0].lastEventId, '7')
    t.ok(contexts[0].signal.aborted, 'the function source was given the stream signal, aborted once it ended')
    t.same(server.logs.atLeast(WARN), [])
  })
}

test('a text-mode Readable sends each chunk as data, and a character split across chunks stays whole', async (t) => {
  const rocket = Buffer.from('🚀')
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/', (request, reply) => reply.sse(new Readable({
      read () {
        this.push(Buffer.concat([Buffer.from('go '), rocket.subarray(0, 2)]))
        this.push(Buffer.concat([rocket.subarray(2), Buffer.from(' now')]))
        this.push(null)
      }
    })))
  })
  const client = await openStream(t, server, '/')
  await client.waitForEnd()
  t.equal(datas(client.events).join(''), 'go 🚀 now')
  t.notOk(client.text.includes('\uFFFD'), 'no replacement character')
})

for (const protocol of PROTOCOLS) {
  test(`${protocol}: the push handle sends events and comments, then closes`, async (t) => {
    const server = await startServer(t, protocol, (app) => {
      app.get('/', (request, reply) => {
        const stream = reply.sse()
        t.equal(stream.send({ id: '1', event: 'greeting', data: { hello: 'world' } }), true)
        t.equal(stream.comment('just a note'), true)
        t.equal(stream.send('plain'), true)
        stream.close()
        t.equal(stream.closed, true)
        t.equal(stream.send('late'), false, 'nothing is sent after close')
        t.equal(stream.comment('late'), false)
        stream.close()
      })
    })
    const client = await openStream(t, server, '/')
    await client.waitForEnd()
    t.same(client.events, [
      { id: '1', event: 'greeting', data: '{"hello":"world"}' },
      { id: undefined, event: undefined, data: 'plain' }
    ])
    t.same(client.comments, ['just a note'])
  })
}

test('a per-stream serializer overrides the plugin\'s, and bytes go base64', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/', (request, reply) => reply.sse([{ data: { n: 1 } }, { data: Buffer.from('bytes') }],
      { serializer: (data) => `custom:${JSON.stringify(data)}` }))
    app.get('/plugin', (request, reply) => reply.sse([{ data: { n: 1 } }]))
  }, { plugin: { serializer: (data) => `plugin:${JSON.stringify(data)}` } })
  const client = await openStream(t, server, '/')
  await client.waitForEnd()
  t.same(datas(client.events), ['custom:{"n":1}', Buffer.from('bytes').toString('base64')])
  const plugin = await openStream(t, server, '/plugin')
  await plugin.waitForEnd()
  t.same(datas(plugin.events), ['plugin:{"n":1}'])
})

for (const protocol of PROTOCOLS) {
  test(`${protocol}: a large sync iterable arrives complete and in order`, async (t) => {
    const count = 20_000
    const server = await startServer(t, protocol, (app) => {
      app.get('/', (request, reply) => reply.sse(Array.from({ length: count }, (_, i) => ({ id: String(i), data: `event ${i}` }))))
    })
    const client = await openStream(t, server, '/')
    await client.waitForEnd(30_000)
    t.equal(client.events.length, count)
    t.ok(client.events.every((event, i) => event.id === String(i) && event.data === `event ${i}`), 'every event, in order')
  })
}

test('a source that ends closes the stream and its generator\'s finally runs', async (t) => {
  const finished = signalled()
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/', (request, reply) => reply.sse((async function * () {
      try {
        yield 'only'
      } finally {
        finished.resolve()
      }
    })()))
  })
  const client = await openStream(t, server, '/')
  await client.waitForEnd()
  await within(finished.promise, 'the finally block')
  t.same(datas(client.events), ['only'])
})

import { test } from 'tap'
import { Readable } from 'node:stream'
import { PROTOCOLS, startServer } from './helpers/server'
import { openStream } from './helpers/client'
import { signalled, within } from './helpers/wait'
import { WARN } from './helpers/logs'
import type { EventStream, SseMessage, SseSourceContext } from '../index'

const datas = (events: Array<{ data: string }>): string[] => events.map((event) => event.data)

for (const protocol of PROTOCOLS) {
  test(`${protocol}: every kind of source streams its events in order`, async (t) => {
    const server = await startServer(t, protocol, (app) => {
      app.get('/array', (request, reply) => reply.sse(['a', { id: '1', event: 'b', data: 'b' }]))
      app.get('/generator', (request, reply) => reply.sse((function * () { yield 'a'; yield { id: '1', event: 'b', data: 'b' } })()))
      app.get('/async-generator', (request, reply) => reply.sse((async function * () {
        yield 'a'
        await new Promise((resolve) => setImmediate(resolve))
        yield { id: '1', event: 'b', data: 'b' }
      })()))
      app.get('/readable-objects', (request, reply) => reply.sse(Readable.from(['a', { id: '1', event: 'b', data: 'b' }])))
      app.get('/web-stream', (request, reply) => reply.sse(new ReadableStream<SseMessage>({
        start (controller) {
          controller.enqueue('a')
          controller.enqueue({ id: '1', event: 'b', data: 'b' })
          controller.close()
        }
      })))
    })
    for (const path of ['/array', '/generator', '/async-generator', '/readable-objects', '/web-stream']) {
      const client = await openStream(t, server, path)
      await client.waitForEnd()
      t.same(client.events, [
        { id: undefined, event: undefined, data: 'a' },
        { id: '1', event: 'b', data: 'b' }
      ], path)
    }
    t.same(server.logs.atLeast(WARN), [])
  })

  test(`${protocol}: a function source is given the stream's signal and the client's last event id`, async (t) => {
    const contexts: SseSourceContext[] = []
    const handles: EventStream[] = []
    const server = await startServer(t, protocol, (app) => {
      app.get('/function', (request, reply) => {
        handles.push(reply.sse((context) => {
          contexts.push(context)
          return [`after ${String(context.lastEventId)}`, `aborted: ${String(context.signal.aborted)}`]
        }))
      })
      app.get('/async-generator-function', (request, reply) => reply.sse(async function * ({ lastEventId, signal }) {
        yield `after ${String(lastEventId)}`
        yield `aborted: ${String(signal.aborted)}`
      }))
    })
    for (const path of ['/function', '/async-generator-function']) {
      const resumed = await openStream(t, server, path, { headers: { 'last-event-id': '7' } })
      await resumed.waitForEnd()
      t.same(datas(resumed.events), ['after 7', 'aborted: false'], path)
      const fresh = await openStream(t, server, path)
      await fresh.waitForEnd()
      t.same(datas(fresh.events), ['after undefined', 'aborted: false'], `${path}, no Last-Event-ID`)
    }
    t.equal(contexts.length, 2)
    t.equal(contexts[0].signal, handles[0].signal, 'the signal is the stream\'s own')
    t.match(contexts[0].signal.reason, { code: 'FST_SSE_STREAM_ENDED' }, 'it aborted when the source ended')
    t.same(server.logs.atLeast(WARN), [])
  })

  test(`${protocol}: a text-mode Readable sends each chunk as data, and a character split across chunks stays whole`, async (t) => {
    const rocket = Buffer.from('🚀')
    t.equal(rocket.length, 4)
    const readable = new Readable({ read () {} })
    const server = await startServer(t, protocol, (app) => {
      app.get('/', (request, reply) => reply.sse(readable))
    })
    const client = await openStream(t, server, '/')
    readable.push(Buffer.concat([Buffer.from('go '), rocket.subarray(0, 2)]))
    // The first chunk arrives on its own, the half character held back until the rest of it comes.
    await client.waitForEvents(1)
    t.same(datas(client.events), ['go '])
    readable.push(Buffer.concat([rocket.subarray(2), Buffer.from(' now\nand then')]))
    readable.push(null)
    await client.waitForEnd()
    t.same(datas(client.events), ['go ', '🚀 now\nand then'], 'one message a chunk, a line break in it kept')
    t.notOk(client.text.includes('\uFFFD'), 'no replacement character')
  })

  test(`${protocol}: the push handle sends events and comments, then closes`, async (t) => {
    const ended = signalled<unknown>()
    const server = await startServer(t, protocol, (app) => {
      app.get('/', (request, reply) => {
        const stream = reply.sse()
        t.equal(stream.lastEventId, '41', 'the handle knows the client\'s last event id')
        t.equal(stream.closed, false)
        t.equal(stream.send({ id: '42', event: 'greeting', data: { hello: 'world' } }), true)
        t.equal(stream.comment('just a note'), true)
        setImmediate(() => {
          t.equal(stream.send('plain'), true)
          stream.close()
          t.equal(stream.closed, true)
          ended.resolve(stream.signal.reason)
          t.equal(stream.send('late'), false, 'nothing is sent after close')
          t.equal(stream.comment('late'), false)
          stream.close()
        })
      })
    })
    const client = await openStream(t, server, '/', { headers: { 'last-event-id': '41' } })
    await client.waitForEnd()
    t.match(await within(ended.promise, 'the close'), { code: 'FST_SSE_STREAM_ENDED' })
    t.same(client.events, [
      { id: '42', event: 'greeting', data: '{"hello":"world"}' },
      { id: undefined, event: undefined, data: 'plain' }
    ])
    t.same(client.comments, ['just a note'])
    t.notOk(client.text.includes('late'))
  })

  test(`${protocol}: a large sync iterable arrives complete and in order`, async (t) => {
    const count = 20_000
    let pulled = 0
    function * many (): Generator<SseMessage> {
      for (let i = 0; i < count; i++) {
        pulled++
        yield { id: String(i), data: `event ${i}` }
      }
    }
    const server = await startServer(t, protocol, (app) => {
      app.get('/', (request, reply) => reply.sse(many()))
    })
    const client = await openStream(t, server, '/')
    await client.waitForEnd(30_000)
    t.equal(pulled, count)
    t.equal(client.events.length, count)
    const wrong = client.events.findIndex((event, i) => event.id !== String(i) || event.data !== `event ${i}`)
    t.equal(wrong, -1, 'every event, in order')
  })

  test(`${protocol}: a source that ends closes the stream, and its generator's finally runs`, async (t) => {
    const finished = signalled()
    const reason = signalled<unknown>()
    const server = await startServer(t, protocol, (app) => {
      app.get('/', (request, reply) => {
        const stream = reply.sse((async function * () {
          try {
            yield 'only'
          } finally {
            finished.resolve()
          }
        })())
        stream.signal.addEventListener('abort', () => reason.resolve(stream.signal.reason))
      })
    })
    const client = await openStream(t, server, '/')
    await client.waitForEnd()
    await within(finished.promise, 'the finally block')
    t.match(await within(reason.promise, 'the signal'), { code: 'FST_SSE_STREAM_ENDED' })
    t.same(datas(client.events), ['only'])
    t.same(server.logs.atLeast(WARN), [])
  })
}

test('a per-stream serializer overrides the plugin\'s; strings are not serialized; bytes go base64', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/per-stream', (request, reply) => reply.sse([{ data: { n: 1 } }, 'as is', { data: 'as is too' }],
      { serializer: (data) => `custom:${JSON.stringify(data)}` }))
    app.get('/plugin', (request, reply) => reply.sse([{ data: { n: 1 } }]))
    app.get('/bytes', (request, reply) => reply.sse([{ data: Buffer.from('bytes\n\u00e9') }, { data: new Uint8Array([0, 255, 10]) }]))
    app.get('/push-bytes', (request, reply) => {
      const stream = reply.sse(undefined, { serializer: () => 'never used for bytes' })
      stream.send({ data: Buffer.from('pushed') })
      stream.close()
    })
  }, { plugin: { serializer: (data) => `plugin:${JSON.stringify(data)}` } })

  const perStream = await openStream(t, server, '/per-stream')
  await perStream.waitForEnd()
  t.same(datas(perStream.events), ['custom:{"n":1}', 'as is', 'as is too'])
  const plugin = await openStream(t, server, '/plugin')
  await plugin.waitForEnd()
  t.same(datas(plugin.events), ['plugin:{"n":1}'])
  const bytes = await openStream(t, server, '/bytes')
  await bytes.waitForEnd()
  t.same(datas(bytes.events), [Buffer.from('bytes\n\u00e9').toString('base64'), Buffer.from([0, 255, 10]).toString('base64')])
  t.same(Buffer.from(bytes.events[0].data, 'base64').toString(), 'bytes\n\u00e9', 'the bytes come back whole')
  const pushed = await openStream(t, server, '/push-bytes')
  await pushed.waitForEnd()
  t.same(datas(pushed.events), [Buffer.from('pushed').toString('base64')])
})

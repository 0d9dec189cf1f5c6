import { test } from 'tap'
import { PROTOCOLS, isHttp2, startServer } from './helpers/server'
import { openStream } from './helpers/client'
import { signalled, within } from './helpers/wait'

for (const protocol of PROTOCOLS) {
  test(`${protocol}: SSE headers are flushed before the first event, and the handler's own headers are kept`, async (t) => {
    const warnings: Error[] = []
    const onWarning = (warning: Error): void => { warnings.push(warning) }
    process.on('warning', onWarning)
    t.teardown(() => process.removeListener('warning', onWarning))

    const release = signalled()
    const server = await startServer(t, protocol, (app) => {
      app.get('/events', (request, reply) => {
        reply.code(203)
          .header('x-request-tag', 'abc')
          .header('set-cookie', ['a=1', 'b=2'])
          .header('cache-control', 'no-store')
          .header('content-type', 'application/json')
          .header('content-length', '12')
          .header('connection', 'keep-alive')
          .header('keep-alive', 'timeout=5')
          .header('transfer-encoding', 'chunked')
          .header('upgrade', 'h2c')
        return reply.sse(async function * () {
          await release.promise
          yield 'first'
        })
      })
    })

    // The source yields nothing until released: the headers must arrive without it.
    const client = await openStream(t, server, '/events')
    t.equal(client.events.length, 0, 'the headers came before any event')
    t.equal(client.status, 203)
    t.equal(client.headers['content-type'], 'text/event-stream; charset=utf-8')
    t.equal(client.headers['cache-control'], 'no-store', 'the handler may choose its cache policy')
    t.equal(client.headers['x-accel-buffering'], 'no')
    t.equal(client.headers['x-request-tag'], 'abc')
    t.same(client.headers['set-cookie'], ['a=1', 'b=2'])
    t.equal(client.headers['content-length'], undefined)
    if (isHttp2(protocol)) {
      for (const name of ['connection', 'keep-alive', 'transfer-encoding', 'upgrade']) {
        t.equal(client.headers[name], undefined, `no ${name} header over HTTP/2`)
      }
    }
    release.resolve()
    await client.waitForEvents(1)
    t.equal(client.events[0].data, 'first')
    t.same(warnings.map((warning) => `${warning.name}: ${warning.message}`), [], 'no process warning at all')
  })
}

test('the default cache-control is no-cache', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/events', (request, reply) => reply.sse(['x']))
  })
  const client = await openStream(t, server, '/events')
  t.equal(client.headers['cache-control'], 'no-cache')
  await within(client.waitForEnd(), 'the end')
})

import { test } from 'tap'
import { startServer, type Protocol } from './helpers/server'
import { openStream } from './helpers/client'
import { signalled, within } from './helpers/wait'
import { WARN } from './helpers/logs'
import { startFrozenClient } from './helpers/frozen-client'
import type { EventStream } from '../index'

// Clients frozen for real (a process stopped with SIGSTOP): the kernel takes what the server sends until its
// buffers are full, then nothing moves, and nothing answers.

const PROTOCOLS_UNDER_TEST: Protocol[] = ['h2c', 'h2', 'http1']

/**
 * Sends small events, a turn of the event loop apart, until some wait in the server for the frozen client and are
 * still waiting a few timer turns later: then only a few KB wait, and every write was taken as if nothing were
 * wrong. (On a busy machine an event can wait a moment for the session to hand it to the kernel, which still has
 * room: that is not the frozen client holding it back.)
 */
async function fillUntilWaiting (stream: EventStream): Promise<void> {
  const event = { data: 'f'.repeat(2000) }
  for (let i = 0; i < 20_000; i++) {
    stream.send(event)
    await new Promise((resolve) => setImmediate(resolve))
    if (stream.bufferedBytes === 0) continue
    await new Promise((resolve) => setTimeout(resolve, 25))
    if (stream.bufferedBytes > 0) return
  }
  throw new Error('no bytes waited for the frozen client')
}

for (const protocol of PROTOCOLS_UNDER_TEST) {
  test(`${protocol}: a quiet stream whose frozen client has a few KB waiting is dropped after writeTimeout`, async (t) => {
    const handle = signalled<EventStream>()
    const server = await startServer(t, protocol, (app) => {
      app.get('/push', (request, reply) => { handle.resolve(reply.sse()) })
    }, { plugin: { writeTimeout: 300, heartbeatInterval: 100, maxBufferedBytes: 64 * 1024 * 1024 }, logLevel: 'warn' })
    const frozen = await startFrozenClient(t, server, '/push')
    const stream = await within(handle.promise, 'the stream')
    frozen.freeze()
    await fillUntilWaiting(stream)
    t.ok(stream.bufferedBytes > 0 && stream.bufferedBytes < 16 * 1024, `a few KB wait (${stream.bufferedBytes} bytes)`)
    // Quiet from now on: only heartbeats would be written, and they must not count as the client taking anything.
    await within(new Promise((resolve) => stream.signal.addEventListener('abort', resolve)), 'the frozen client to be dropped')
    t.match(stream.signal.reason, { code: 'FST_SSE_FROZEN_CLIENT' })
    const warning = await server.logs.waitFor((record) => record.level === WARN, 'the warning')
    t.match(warning, { msg: /longer than writeTimeout/, writeTimeout: 300 })
  })

  test(`${protocol}: a stream the server closed, whose last bytes wait for a frozen client, gives its limits slot back`,
    async (t) => {
      const handles: EventStream[] = []
      // writeTimeout long enough for the refused request to be answered while the slot is still held.
      const server = await startServer(t, protocol, (app) => {
        app.get('/push', (request, reply) => { handles.push(reply.sse()) })
      }, { plugin: { writeTimeout: 1500, heartbeatInterval: 0, limits: { maxStreams: 1 } }, logLevel: 'warn' })
      const frozen = await startFrozenClient(t, server, '/push')
      frozen.freeze()
      const [stream] = handles
      await fillUntilWaiting(stream)
      stream.close()
      const refused = await openStream(t, server, '/push', { headers: { accept: '*/*' } })
      t.equal(refused.status, 503, 'the slot is taken while its last bytes wait')
      await server.logs.waitFor((record) => record.level === WARN && /writeTimeout/.test(record.msg ?? ''), 'the drop')
      const next = await openStream(t, server, '/push')
      t.equal(next.status, 200, 'then it is free')
    })
}

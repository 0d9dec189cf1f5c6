import { test } from 'tap'
import { PROTOCOLS, isHttp2, startServer } from './helpers/server'
import { openStream } from './helpers/client'
import { signalled } from './helpers/wait'
import type { EventStream } from '../index'

// A stream's headers reach the client at once. Over HTTP/1.1 a proxy in front (nginx) holds them until the first byte
// of the body: a stream that writes nothing by the turn after it opens writes a comment. Over HTTP/2 the client has
// them at once (nginx talks HTTP/1.1 to the server), and a first write would cost the stream about 1 KB for its life.

for (const protocol of PROTOCOLS) {
  test(`${protocol}: a quiet stream's first bytes are ${isHttp2(protocol) ? 'its first event' : 'a comment, at once'}`, async (t) => {
    const opened = signalled<EventStream>()
    const server = await startServer(t, protocol, (app) => {
      app.get('/', (request, reply) => { opened.resolve(reply.sse()) })
    }, { plugin: { heartbeatInterval: 0 } })
    const client = await openStream(t, server, '/')
    const stream = await opened.promise
    // The client has its headers: the turn after the stream opened has long gone by.
    stream.send({ data: 'first' })
    await client.waitForEvents(1)
    t.equal(client.text, isHttp2(protocol) ? 'data: first\n\n' : ':\n\ndata: first\n\n')
  })
}

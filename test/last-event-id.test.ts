import { test } from 'tap'
import net from 'node:net'
import type { FastifyInstance } from 'fastify'
import { PROTOCOLS, startServer, type TestServer } from './helpers/server'
import { openStream } from './helpers/client'
import { within } from './helpers/wait'

function echoRoutes (app: FastifyInstance): void {
  app.get('/source', (request, reply) => reply.sse(({ lastEventId }) => [{ data: String(lastEventId) }]))
  app.get('/push', (request, reply) => {
    const stream = reply.sse()
    stream.send(String(stream.lastEventId))
    stream.close()
  })
}

async function lastEventIdSeen (t: Parameters<typeof startServer>[0], server: TestServer, path: string,
  headers: Record<string, string> = {}): Promise<string> {
  const client = await openStream(t, server, path, { headers })
  await client.waitForEnd()
  return client.events[0].data
}

for (const protocol of PROTOCOLS) {
  test(`${protocol}: Last-Event-ID reaches the source and the handle; the query is the fallback`, async (t) => {
    const server = await startServer(t, protocol, echoRoutes)
    t.equal(await lastEventIdSeen(t, server, '/source', { 'last-event-id': '41' }), '41')
    t.equal(await lastEventIdSeen(t, server, '/push', { 'last-event-id': '41' }), '41')
    t.equal(await lastEventIdSeen(t, server, '/source?lastEventId=17'), '17')
    t.equal(await lastEventIdSeen(t, server, '/source?lastEventId=17', { 'last-event-id': '41' }), '41', 'the header wins')
    t.equal(await lastEventIdSeen(t, server, '/source'), 'undefined')
    t.equal(await lastEventIdSeen(t, server, '/source?lastEventId='), 'undefined', 'an empty value is no value')
  })
}

test('the query parameter can be renamed or turned off', async (t) => {
  const renamed = await startServer(t, 'h2c', echoRoutes, { plugin: { lastEventIdQuery: 'since' } })
  t.equal(await lastEventIdSeen(t, renamed, '/source?since=5'), '5')
  t.equal(await lastEventIdSeen(t, renamed, '/source?lastEventId=5'), 'undefined')
  const off = await startServer(t, 'h2c', echoRoutes, { plugin: { lastEventIdQuery: false } })
  t.equal(await lastEventIdSeen(t, off, '/source?lastEventId=5'), 'undefined')
  t.equal(await lastEventIdSeen(t, off, '/source', { 'last-event-id': '6' }), '6', 'the header still works')
})

test('values we could not have sent are ignored, with a debug log that never holds them', async (t) => {
  const server = await startServer(t, 'h2c', echoRoutes)
  const long = 'x'.repeat(257)
  t.equal(await lastEventIdSeen(t, server, '/source', { 'last-event-id': long }), 'undefined')
  t.equal(await lastEventIdSeen(t, server, `/source?lastEventId=${'y'.repeat(300)}`), 'undefined')
  t.equal(await lastEventIdSeen(t, server, '/source?lastEventId=a%0Ab'), 'undefined', 'a line feed')
  t.equal(await lastEventIdSeen(t, server, '/source?lastEventId=a%1Bb'), 'undefined', 'an escape')
  t.equal(await lastEventIdSeen(t, server, '/source?lastEventId=1&lastEventId=2'), 'undefined', 'repeated')
  t.equal(await lastEventIdSeen(t, server, '/source?lastEventId=a%09b'), 'a\tb', 'a tab is allowed: an id may hold one')
  t.equal(await lastEventIdSeen(t, server, `/source?lastEventId=${'z'.repeat(256)}`), 'z'.repeat(256), '256 is the limit')
  const ignored = server.logs.withMessage('ignored a last event id')
  t.equal(ignored.length, 5)
  t.same(ignored.map((record) => record.level), [20, 20, 20, 20, 20], 'at debug level')
  t.same(ignored.map((record) => record.msg), [
    'fastify-sse-h2: ignored a last event id that is longer than 256 characters',
    'fastify-sse-h2: ignored a last event id that is longer than 256 characters',
    'fastify-sse-h2: ignored a last event id that has control characters',
    'fastify-sse-h2: ignored a last event id that has control characters',
    'fastify-sse-h2: ignored a last event id that is repeated'
  ])
  t.notOk(ignored.some((record) => JSON.stringify(record).includes('xxxxxxxx') || JSON.stringify(record).includes('yyyyyyyy')),
    'our lines never hold the value')
  t.notOk(server.logs.lines.some((line) => line.includes(long)), 'the header value is nowhere in the logs')
})

/** Sends a raw HTTP/1.1 request, bytes as given, and resolves to the response text once the server ends it. */
async function rawRequest (server: TestServer, head: Buffer): Promise<string> {
  const { port } = new URL(server.origin)
  const socket = net.connect(Number(port), '127.0.0.1')
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  socket.write(head)
  await within(new Promise((resolve) => socket.on('close', resolve)), 'the raw response')
  return Buffer.concat(chunks).toString('utf8')
}

test('a header that is not UTF-8 is ignored; a UTF-8 id is read as UTF-8', async (t) => {
  const server = await startServer(t, 'http1', echoRoutes)
  const request = (value: Buffer): Buffer => Buffer.concat([
    Buffer.from('GET /source HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nLast-Event-ID: '),
    value, Buffer.from('\r\n\r\n')])
  t.match(await rawRequest(server, request(Buffer.from('é-1', 'utf8'))), /data: é-1\n/)
  t.match(await rawRequest(server, request(Buffer.from([0x61, 0xff, 0x62]))), /data: undefined\n/)
  t.ok(server.logs.withMessage('ignored a last event id that is not UTF-8').length === 1)
})

for (const protocol of PROTOCOLS) {
  test(`${protocol}: retry is sent when a stream opens; reply.sse() can override it`, async (t) => {
    const server = await startServer(t, protocol, (app) => {
      app.get('/', (request, reply) => reply.sse(['x']))
      app.get('/override', (request, reply) => reply.sse(['x'], { retry: 250 }))
    }, { plugin: { retry: 1500 } })
    const client = await openStream(t, server, '/')
    await client.waitForEnd()
    t.same(client.retries, [1500])
    t.ok(client.text.startsWith('retry: 1500\n\n'), 'before anything else')
    const override = await openStream(t, server, '/override')
    await override.waitForEnd()
    t.same(override.retries, [250])
  })
}

test('no retry line without the option', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/', (request, reply) => reply.sse(['x']))
  })
  const client = await openStream(t, server, '/')
  await client.waitForEnd()
  t.same(client.retries, [])
  t.equal(client.text, 'data: x\n\n')
})

test('many Last-Event-ID headers, or one past Node\'s header limit: ignored, and the server goes on', async (t) => {
  const server = await startServer(t, 'http1', echoRoutes)
  const head = (headers: string): Buffer =>
    Buffer.from(`GET /source HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n${headers}\r\n`)
  // Node joins repeated headers with ", ": a hundred of them make a value no id of ours could be.
  const repeated = await rawRequest(server, head('Last-Event-ID: 41\r\n'.repeat(100)))
  t.match(repeated, /^HTTP\/1\.1 200 /)
  t.match(repeated, /data: undefined\n/, 'the source sees no last event id')
  const thrice = await rawRequest(server, head('Last-Event-ID: 5\r\n'.repeat(3)))
  t.match(thrice, /data: undefined\n/, 'three headers are not read as Node\'s joined "5, 5, 5"')
  t.match(await rawRequest(server, head('Last-Event-ID: a,b\r\n')), /data: a,b\n/, 'one header with a comma is read')
  const huge = await rawRequest(server, head(`Last-Event-ID: ${'9'.repeat(60_000)}\r\n`))
  t.match(huge, /^HTTP\/1\.1 431 /, 'Node refuses a 60 KB header before any route runs')
  t.notOk(huge.includes('9999'), 'and does not reflect it')
  t.match(await rawRequest(server, head('Last-Event-ID: 7\r\n')), /data: 7\n/, 'the next client is served as usual')
  t.notOk(server.logs.lines.some((line) => line.includes('41, 41')), 'the joined value is nowhere in the logs')
})

import { test } from 'tap'
import http from 'node:http'
import { gunzipSync } from 'node:zlib'
import compress from '@fastify/compress'
import { startServer, type Protocol, type TestServer } from './helpers/server'
import { connectSession, openStream } from './helpers/client'
import { signalled, within } from './helpers/wait'
import { WARN } from './helpers/logs'

interface RawResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

interface Teardown {
  teardown: (fn: () => unknown) => void
}

// The bytes as they came over the wire, not decoded: the SSE client helper reads text.
async function getRaw (t: Teardown, server: TestServer, path: string, headers: Record<string, string>): Promise<RawResponse> {
  if (server.protocol === 'h2c') {
    const session = await connectSession(t, server)
    const request = session.request({ ':path': path, ...headers })
    const chunks: Buffer[] = []
    return await within(new Promise<RawResponse>((resolve, reject) => {
      let status = 0
      let responseHeaders: RawResponse['headers'] = {}
      request.on('response', (incoming) => {
        status = Number(incoming[':status'])
        responseHeaders = incoming
      })
      request.on('data', (chunk: Buffer) => chunks.push(chunk))
      request.on('end', () => resolve({ status, headers: responseHeaders, body: Buffer.concat(chunks) }))
      request.on('error', reject)
    }), `the response of ${path}`)
  }
  return await within(new Promise<RawResponse>((resolve, reject) => {
    const request = http.get(`${server.origin}${path}`, { headers, agent: false }, (response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk))
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }))
      response.on('error', reject)
    })
    request.on('error', reject)
    t.teardown(() => request.destroy())
  }), `the response of ${path}`)
}

const ACCEPT_ENCODING = { 'accept-encoding': 'gzip, deflate, br' }
const EVENTS = 5
const BIG = { text: 'compress me '.repeat(200) }

for (const protocol of ['h2c', 'http1'] as Protocol[]) {
  test(`${protocol}: with @fastify/compress, events arrive one by one and uncompressed; JSON is still compressed`, async (t) => {
    const releases = Array.from({ length: EVENTS }, () => signalled())
    const server = await startServer(t, protocol, async (app) => {
      await app.register(compress, { global: true })
      app.get('/events', (request, reply) => reply.sse(async function * () {
        for (let i = 0; i < EVENTS; i++) {
          await releases[i].promise
          yield { id: String(i), data: `event ${i}` }
        }
      }))
      app.get('/json', async () => BIG)
    })

    const client = await openStream(t, server, '/events', { headers: ACCEPT_ENCODING })
    t.equal(client.headers['content-encoding'], undefined, 'the stream is not compressed')
    t.equal(client.headers['content-type'], 'text/event-stream; charset=utf-8')
    // Event n is made only once the client has event n - 1: nothing can be held back to fill a buffer.
    for (let i = 0; i < EVENTS; i++) {
      releases[i].resolve()
      await client.waitForEvents(i + 1)
      t.equal(client.events[i].data, `event ${i}`)
    }
    await client.waitForEnd()
    t.equal(client.events.length, EVENTS)

    const json = await getRaw(t, server, '/json', { 'accept-encoding': 'gzip' })
    t.equal(json.status, 200)
    t.equal(json.headers['content-encoding'], 'gzip', 'a normal route is compressed when the client asks')
    t.same(JSON.parse(gunzipSync(json.body).toString()), BIG)
    const plain = await getRaw(t, server, '/json', {})
    t.equal(plain.headers['content-encoding'], undefined, 'and not when it does not')
    t.same(JSON.parse(plain.body.toString()), BIG)
    t.same(server.logs.atLeast(WARN), [])
  })
}

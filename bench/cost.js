'use strict'

// A fixed amount of work in one process, server and client together, for counting what it costs rather than
// timing it: `valgrind --tool=callgrind` counts instructions (which the noise of a shared machine does not move),
// `/usr/bin/time -v` the CPU time. Compare two builds of the plugin by giving the other one's directory.
//   node bench/cost.js pull [--plugin DIR] [--streams 4] [--count 20000]
//   node bench/cost.js fanout [--plugin DIR] [--subscribers 200] [--count 200]
// DIR holds a build (index.js and lib/, as in dist/); default: this repository's dist/. The work is the bench's
// (bench/targets.js): the same routes, events and client windows; it fails if an event is lost.

const http2 = require('node:http2')
const { resolve } = require('node:path')
const Fastify = require('fastify')

const [scenario, ...rest] = process.argv.slice(2)
const option = (name, fallback) => {
  const i = rest.indexOf(name)
  return i === -1 ? fallback : rest[i + 1]
}
const sse = require(resolve(option('--plugin', resolve(__dirname, '..', 'dist'))))
const { payload } = require('./targets')

async function * events (count, size) {
  for (let i = 0; i < count; i++) yield { id: String(i), data: payload(i, size) }
}

/** Counts the events of a stream (blank-line ended blocks), as text, and resolves when it closes. */
function read (session, path, onEvent) {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path })
    let events = 0
    let rest = ''
    stream.setEncoding('utf8')
    stream.on('data', (chunk) => {
      const text = rest + chunk
      let start = 0
      let end
      while ((end = text.indexOf('\n\n', start)) !== -1) {
        events++
        onEvent?.()
        start = end + 2
      }
      rest = text.slice(start)
    })
    stream.on('close', () => resolve(events))
    stream.on('error', reject)
  })
}

async function main () {
  const app = Fastify({ http2: true })
  await app.register(sse, { heartbeatInterval: 0 })
  const channel = app.sse.channel('cost')
  app.get('/pull', (request, reply) => reply.sse(events(Number(request.query.count), 64)))
  app.get('/sub', (request, reply) => reply.sse(channel))
  await app.listen({ port: 0, host: '127.0.0.1' })
  const session = http2.connect(`http://127.0.0.1:${app.server.address().port}`, { settings: { initialWindowSize: 8 << 20 } })
  await new Promise((resolve) => session.once('remoteSettings', resolve))
  session.setLocalWindowSize(16 << 20)
  let received = 0
  let expected
  if (scenario === 'pull') {
    const streams = Number(option('--streams', 4))
    const count = Number(option('--count', 20_000))
    expected = streams * count
    const counts = await Promise.all(Array.from({ length: streams }, () => read(session, `/pull?count=${count}`)))
    received = counts.reduce((sum, n) => sum + n, 0)
  } else if (scenario === 'fanout') {
    const subscribers = Number(option('--subscribers', 200))
    const count = Number(option('--count', 200))
    expected = subscribers * count
    let done
    const all = new Promise((resolve) => { done = resolve })
    for (let i = 0; i < subscribers; i++) read(session, '/sub', () => { if (++received === expected) done() })
    while (channel.subscribers < subscribers) await new Promise((resolve) => setTimeout(resolve, 5))
    const published = []
    for (let i = 0; i < count; i++) published.push(channel.publish({ data: payload(i, 64) }))
    await Promise.all(published)
    await all
  } else {
    throw new Error(`unknown scenario ${scenario}: pull or fanout`)
  }
  session.destroy()
  await app.close()
  if (received !== expected) throw new Error(`${received} of ${expected} events arrived`)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})

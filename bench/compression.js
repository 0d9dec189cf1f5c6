'use strict'

// `npm run bench:compression`: what the `compression` option saves on the wire for JSON events, and what it
// costs the server in CPU. The server (a process of its own) streams 20,000 JSON events of about 150 bytes
// to 20 streams over h2c, made by an async generator; the client counts the bytes it receives. Server CPU is
// taken from inside the server process around each run. Medians of --runs N (default 5).

const { fork } = require('node:child_process')
const http2 = require('node:http2')
const { once } = require('node:events')

const EVENTS = 20_000
const STREAMS = 20

function event (i) {
  return { data: { id: i, symbol: ['ACME', 'GLOBEX', 'INITECH'][i % 3], price: 100 + (i % 97) * 0.25, volume: 1000 + i, currency: 'EUR', at: new Date(1764064800000 + i * 10).toISOString() } }
}

async function server () {
  const Fastify = require('fastify')
  const sse = require('..')
  const app = Fastify({ http2: true })
  await app.register(sse, { heartbeatInterval: 0 })
  app.get('/:encoding', (request, reply) => {
    const encoding = request.params.encoding
    reply.sse(async function * () {
      for (let i = 0; i < EVENTS; i++) yield event(i)
    }, { compression: encoding === 'identity' ? false : [encoding] })
  })
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  process.on('message', (message) => {
    if (message === 'cpu') process.send({ cpu: process.cpuUsage() })
    else app.close().then(() => process.exit(0))
  })
  process.send({ address })
}

async function run (proc, origin, encoding) {
  const cpu = async () => {
    proc.send('cpu')
    const [{ cpu }] = await once(proc, 'message')
    return cpu.user + cpu.system
  }
  const session = http2.connect(origin, { settings: { initialWindowSize: 8 * 1024 * 1024 } })
  await once(session, 'connect')
  session.setLocalWindowSize(16 * 1024 * 1024)
  const before = await cpu()
  const started = process.hrtime.bigint()
  let bytes = 0
  await Promise.all(Array.from({ length: STREAMS }, async () => {
    const stream = session.request({ ':path': `/${encoding}`, 'accept-encoding': 'br, gzip' })
    stream.on('data', (chunk) => { bytes += chunk.length })
    await once(stream, 'end')
  }))
  const ms = Number(process.hrtime.bigint() - started) / 1e6
  const cpuMs = (await cpu() - before) / 1000
  session.close()
  return { bytes, ms, cpuMs }
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

async function main () {
  const args = process.argv.slice(2)
  const runs = args.includes('--runs') ? Number(args[args.indexOf('--runs') + 1]) : 5
  const proc = fork(__filename, ['server'])
  const [{ address }] = await once(proc, 'message')
  const results = { identity: [], gzip: [], br: [] }
  for (let i = 0; i < runs; i++) {
    for (const encoding of Object.keys(results)) results[encoding].push(await run(proc, address, encoding))
  }
  proc.send('close')
  const rows = Object.entries(results).map(([encoding, list]) => ({
    encoding,
    bytes: median(list.map((r) => r.bytes)),
    cpuMs: median(list.map((r) => r.cpuMs)),
    ms: median(list.map((r) => r.ms))
  }))
  const base = rows[0]
  const total = EVENTS * STREAMS
  console.log(`${total.toLocaleString('en-US')} JSON events (${Math.round(base.bytes / total)} bytes each on the wire ` +
    `uncompressed), ${STREAMS} streams over h2c, medians of ${runs} runs\n`)
  console.log('| encoding | bytes on the wire | saved | server CPU | CPU per event | wall time |')
  console.log('| --- | --- | --- | --- | --- | --- |')
  for (const row of rows) {
    console.log(`| ${row.encoding} | ${row.bytes.toLocaleString('en-US')} | ${(100 - (100 * row.bytes) / base.bytes).toFixed(1)}% | ` +
      `${Math.round(row.cpuMs)} ms (${(row.cpuMs / base.cpuMs).toFixed(2)}x) | ${((row.cpuMs * 1000) / total).toFixed(2)} µs | ${Math.round(row.ms)} ms |`)
  }
}

if (process.argv[2] === 'server') server()
else main()

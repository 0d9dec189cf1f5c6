'use strict'

// `npm run bench:channels`: a page's feed of 10 channels as one stream of 10 channels (`reply.sse([...])`, whose
// ids are cursors) against 10 streams of one channel each (the shared-buffer fan-out, ids given by the store).
// The same pages, the same publishes, the same deliveries: PAGES pages over h2c, each getting every event of the
// 10 channels, EVENTS events of 64 bytes published to each channel as fast as the API allows. The server runs in
// a process of its own, started anew for each run (its memory is measured after GC, with the pages open, minus
// before); the client checks that each stream gets each channel's events once, in order.
//   --runs N   runs of each shape, interleaved (default 5)
//   --quick    smaller sizes, one run: a smoke run

const { fork } = require('node:child_process')
const http2 = require('node:http2')
const { once } = require('node:events')

const CHANNELS = 10
const SIZE = 64
const CONNECTIONS = 10

const SHAPES = {
  'one stream of 10 channels': { streamsPerPage: 1, path: () => '/many' },
  '10 streams of one channel': { streamsPerPage: CHANNELS, path: (i) => `/one/${i}` }
}

function payload (channel, i) {
  return `${channel} ${i} `.padEnd(SIZE, '.')
}

async function server () {
  const Fastify = require('fastify')
  // FASTIFY_SSE_H2_BUILD=DIR loads another build (a copy of dist/), to compare two.
  const sse = require(process.env.FASTIFY_SSE_H2_BUILD ? require('node:path').resolve(process.env.FASTIFY_SSE_H2_BUILD) : '..')
  const app = Fastify({ http2: true })
  await app.register(sse, { heartbeatInterval: 0, maxBufferedBytes: 16 * 1024 * 1024 })
  const channels = Array.from({ length: CHANNELS }, (_, i) => app.sse.channel(`c${i}`))
  app.get('/many', (request, reply) => reply.sse(channels))
  app.get('/one/:i', (request, reply) => reply.sse(channels[Number(request.params.i)]))
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const stats = () => {
    global.gc()
    global.gc()
    const { user, system } = process.cpuUsage()
    const { rss, heapUsed } = process.memoryUsage()
    return { cpu: user + system, rss, heapUsed, subscriptions: channels.reduce((sum, channel) => sum + channel.subscribers, 0) }
  }
  process.on('message', async (message) => {
    if (message.cmd === 'stats') {
      process.send(stats())
    } else if (message.cmd === 'publish') {
      const published = []
      for (let i = 0; i < message.events; i++) {
        for (let c = 0; c < CHANNELS; c++) published.push(channels[c].publish({ data: payload(c, i) }))
      }
      await Promise.all(published)
      process.send({ published: published.length })
    }
  })
  process.send({ address })
}

async function ask (proc, message) {
  proc.send(message)
  const [answer] = await once(proc, 'message')
  return answer
}

/** A stream's events, checked: each channel's numbers must follow each other from 0. */
function counter (onEvent) {
  const next = new Array(CHANNELS).fill(0)
  let rest = ''
  const state = { bytes: 0, disorder: 0 }
  state.feed = (chunk) => {
    state.bytes += Buffer.byteLength(chunk)
    const text = rest + chunk
    let start = 0
    let end
    while ((end = text.indexOf('\n\n', start)) !== -1) {
      const data = text.indexOf('\ndata: ', start - 1)
      if (data !== -1 && data < end) {
        const [channel, i] = text.slice(data + 7, end).split(' ')
        if (Number(i) !== next[channel]++) state.disorder++
        onEvent()
      }
      start = end + 2
    }
    rest = text.slice(start)
  }
  return state
}

async function run (shape, pages, events) {
  const proc = fork(__filename, ['server'], { execArgv: ['--expose-gc'] })
  try {
    const [{ address }] = await once(proc, 'message')
    const sessions = await Promise.all(Array.from({ length: CONNECTIONS }, async () => {
      const session = http2.connect(address, { settings: { initialWindowSize: 8 * 1024 * 1024 } })
      session.on('error', () => {})
      await once(session, 'remoteSettings')
      session.setLocalWindowSize(16 * 1024 * 1024)
      return session
    }))
    const before = await ask(proc, { cmd: 'stats' })
    const expected = pages * CHANNELS * events
    let delivered = 0
    let done
    const all = new Promise((resolve) => { done = resolve })
    const streams = []
    const { streamsPerPage, path } = SHAPES[shape]
    for (let page = 0; page < pages; page++) {
      for (let i = 0; i < streamsPerPage; i++) {
        const state = counter(() => { if (++delivered === expected) done() })
        const stream = sessions[page % CONNECTIONS].request({ ':path': path(i), accept: 'text/event-stream' })
        stream.setEncoding('utf8')
        stream.on('data', state.feed)
        stream.on('error', () => {})
        streams.push({ stream, state, response: once(stream, 'response') })
      }
    }
    await Promise.all(streams.map(({ response }) => response))
    let open = await ask(proc, { cmd: 'stats' })
    for (let i = 0; i < 100 && open.subscriptions < pages * CHANNELS; i++) open = await ask(proc, { cmd: 'stats' })
    if (open.subscriptions !== pages * CHANNELS) throw new Error(`${open.subscriptions} subscriptions of ${pages * CHANNELS}`)
    const started = process.hrtime.bigint()
    await ask(proc, { cmd: 'publish', events })
    await all
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    const after = await ask(proc, { cmd: 'stats' })
    const disorder = streams.reduce((sum, { state }) => sum + state.disorder, 0)
    if (disorder > 0) throw new Error(`${shape}: ${disorder} events out of order`)
    for (const session of sessions) session.destroy()
    return {
      perSecond: expected / seconds,
      cpuPerDelivery: (after.cpu - open.cpu) / expected,
      bytesPerDelivery: streams.reduce((sum, { state }) => sum + state.bytes, 0) / expected,
      heapPerPage: (open.heapUsed - before.heapUsed) / pages,
      rssPerPage: (open.rss - before.rss) / pages
    }
  } finally {
    proc.kill()
  }
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

async function main () {
  const args = process.argv.slice(2)
  const quick = args.includes('--quick')
  const runs = args.includes('--runs') ? Number(args[args.indexOf('--runs') + 1]) : quick ? 1 : 5
  const pages = quick ? 50 : 500
  const events = quick ? 20 : 100
  const results = Object.fromEntries(Object.keys(SHAPES).map((shape) => [shape, []]))
  for (let i = 0; i < runs; i++) {
    for (const shape of Object.keys(SHAPES)) results[shape].push(await run(shape, pages, events))
  }
  const total = pages * CHANNELS * events
  console.log(`${pages} pages, each getting ${CHANNELS} channels; ${events} events of ${SIZE} bytes published to each ` +
    `channel: ${total.toLocaleString('en-US')} deliveries; h2c, ${CONNECTIONS} connections; medians of ${runs} runs\n`)
  console.log('| shape | streams | deliveries/s | server CPU per delivery | bytes per delivery | heap per page | RSS per page |')
  console.log('| --- | --- | --- | --- | --- | --- | --- |')
  for (const [shape, list] of Object.entries(results)) {
    const figure = (key) => median(list.map((result) => result[key]))
    console.log(`| ${shape} | ${(pages * SHAPES[shape].streamsPerPage).toLocaleString('en-US')} | ` +
      `${Math.round(figure('perSecond')).toLocaleString('en-US')} | ${figure('cpuPerDelivery').toFixed(2)} µs | ` +
      `${Math.round(figure('bytesPerDelivery'))} | ${Math.round(figure('heapPerPage')).toLocaleString('en-US')} B | ` +
      `${Math.round(figure('rssPerPage')).toLocaleString('en-US')} B |`)
  }
}

if (process.argv[2] === 'server') server()
else main()

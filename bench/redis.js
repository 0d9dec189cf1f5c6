'use strict'

// `npm run bench:redis`: cross-instance delivery through the Redis store. A real redis-server on a free port,
// two Fastify instances (A and B, a process each) on it, and a load client (a third process) holding the
// subscribers, all on instance B, over h2c. Every event is published on A.
//   throughput: A publishes events as fast as the API allows (up to 64 publishes in flight); events/s is
//               the count over the time until every subscriber of B has all of them, in order.
//   latency:    A publishes at a steady rate; each event carries its publish time, and the client takes
//               receipt time minus publish time for every (event, subscriber): p50 and p99.
//   --runs N (default 3)  --subscribers N (default 1000)  --events N (default 5000)  --rate N/s (default 200)
// Then the live path at scale (bench/redis-scale.js, which says how): a row per number of instances (1, 2, 4),
// channels followed by each (100, 1,000, 10,000) and shape (a channel per user, shared channels).
//   --no-scale   skip those rows;  --quick   of those, 2 instances, 100 and 10,000 channels a channel per user

const { fork } = require('node:child_process')
const { startRedis } = require('./redis-server')
const { once } = require('node:events')
const { writeFileSync } = require('node:fs')
const { join } = require('node:path')
const http2 = require('node:http2')

// The monotonic clock, the same in every process of the machine.
const now = () => Number(process.hrtime.bigint()) / 1e6
const args = process.argv.slice(2)
const option = (name, fallback) => {
  const i = args.indexOf(name)
  return i === -1 ? fallback : Number(args[i + 1])
}

// ---- instance A or B: a Fastify app with the Redis store; A publishes on request --------------------------
async function instance (redisUrl) {
  const Fastify = require('fastify')
  const sse = require('..')
  const { RedisStore } = require('../dist/redis')
  const app = Fastify({ http2: true })
  await app.register(sse, { store: new RedisStore({ redis: redisUrl }), heartbeatInterval: 0 })
  app.get('/feed', (request, reply) => reply.sse(app.sse.channel('feed')))
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const channel = app.sse.channel('feed')
  process.on('message', async (message) => {
    if (message.type === 'burst') {
      let next = 0
      const worker = async () => {
        while (next < message.count) await channel.publish(`${next++} ${now()}`)
      }
      await Promise.all(Array.from({ length: 64 }, worker))
    } else if (message.type === 'steady') {
      const started = now()
      for (let i = 0; i < message.count; i++) {
        const due = started + (i * 1000) / message.rate
        if (due > now()) await new Promise((resolve) => setTimeout(resolve, due - now()))
        await channel.publish(`${i} ${now()}`)
      }
    } else if (message.type === 'close') {
      await app.close()
      process.exit(0)
    }
    process.send({ type: 'done' })
  })
  process.send({ type: 'listening', address })
}

// ---- the load client: subscribers on B, counting events in order, and the latency of each -------------------
async function client (origin, subscribers) {
  const sessions = []
  for (let i = 0; i < Math.ceil(subscribers / 100); i++) {
    const session = http2.connect(origin, { settings: { initialWindowSize: 1024 * 1024 } })
    session.on('error', () => {})
    await once(session, 'remoteSettings')
    // The connection's window too, as browsers do: 64 KiB shared by 100 streams would make the client the limit.
    session.setLocalWindowSize(32 * 1024 * 1024)
    sessions.push(session)
  }
  let expected = 0
  let received = 0
  let disorder = 0
  let latencies = []
  let waiter
  const streams = []
  const opened = []
  for (let i = 0; i < subscribers; i++) {
    const stream = sessions[i % sessions.length].request({ ':path': '/feed' })
    stream.setEncoding('utf8')
    let rest = ''
    let next = 0
    stream.on('data', (chunk) => {
      const at = now()
      const text = rest + chunk
      let start = 0
      let end
      while ((end = text.indexOf('\n\n', start)) !== -1) {
        const data = text.indexOf('data: ', start)
        if (data !== -1 && data < end) {
          const line = text.slice(data + 6, text.indexOf('\n', data))
          const space = line.indexOf(' ')
          if (Number(line.slice(0, space)) !== next++) disorder++
          latencies.push(at - Number(line.slice(space + 1)))
          if (++received === expected) waiter?.()
        }
        start = end + 2
      }
      rest = text.slice(start)
    })
    stream.on('error', () => {})
    opened.push(once(stream, 'response'))
    streams.push(stream)
    stream.resetNext = () => { next = 0 }
  }
  await Promise.all(opened)
  process.on('message', (message) => {
    if (message.type === 'expect') {
      for (const stream of streams) stream.resetNext()
      expected = message.count * subscribers
      received = 0
      disorder = 0
      latencies = []
      const started = now()
      // Whatever has come by then is reported, and what has not counts as lost.
      const timer = setTimeout(() => waiter?.(), 120_000)
      waiter = () => {
        waiter = undefined
        clearTimeout(timer)
        latencies.sort((a, b) => a - b)
        const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]
        process.send({ type: 'received', ms: now() - started, received, disorder, p50: at(0.5), p99: at(0.99) })
      }
      process.send({ type: 'ready' })
    } else if (message.type === 'close') {
      for (const session of sessions) session.destroy()
      process.exit(0)
    }
  })
  process.send({ type: 'subscribed' })
}

// ---- the runner --------------------------------------------------------------------------------------------
function child (...argv) {
  const proc = fork(__filename, argv, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const next = (type) => new Promise((resolve, reject) => {
    const onMessage = (message) => {
      if (message.type !== type) return
      proc.off('message', onMessage)
      proc.off('exit', reject)
      resolve(message)
    }
    proc.on('message', onMessage)
    proc.once('exit', reject)
  })
  return { proc, next, send: (message) => proc.send(message) }
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

async function round (redis, subscribers, events, rate) {
  const a = child('instance', redis.url)
  const b = child('instance', redis.url)
  await a.next('listening')
  const { address } = await b.next('listening')
  const load = child('client', address, String(subscribers))
  await load.next('subscribed')
  // Warm-up, and proof that B follows the channel before anything is measured.
  load.send({ type: 'expect', count: 1 })
  await load.next('ready')
  a.send({ type: 'burst', count: 1 })
  await load.next('received')

  load.send({ type: 'expect', count: events })
  await load.next('ready')
  a.send({ type: 'burst', count: events })
  const burst = await load.next('received')

  const steadyCount = Math.round(rate * 5)
  load.send({ type: 'expect', count: steadyCount })
  await load.next('ready')
  a.send({ type: 'steady', count: steadyCount, rate })
  const steady = await load.next('received')

  for (const proc of [load, a, b]) proc.send({ type: 'close' })
  await Promise.all([load, a, b].map(({ proc }) => once(proc, 'exit')))
  const lost = events * subscribers - burst.received + steadyCount * subscribers - steady.received
  return {
    eventsPerSecond: (events * 1000) / burst.ms,
    deliveriesPerSecond: (events * subscribers * 1000) / burst.ms,
    p50: steady.p50,
    p99: steady.p99,
    burstP99: burst.p99,
    disorder: burst.disorder + steady.disorder,
    lost
  }
}

async function main () {
  const runs = option('--runs', 3)
  const subscribers = option('--subscribers', 1000)
  const events = option('--events', 5000)
  const rate = option('--rate', 200)
  const redis = await startRedis()
  const results = []
  try {
    for (let i = 0; i < runs; i++) {
      const result = await round(redis, subscribers, events, rate)
      results.push(result)
      console.log(`round ${i + 1}: ${Math.round(result.eventsPerSecond)} events/s (${Math.round(result.deliveriesPerSecond)} ` +
        `deliveries/s), at ${rate}/s p50 ${result.p50.toFixed(2)} ms p99 ${result.p99.toFixed(2)} ms, ` +
        `lost ${result.lost}, out of order ${result.disorder}`)
    }
  } finally {
    redis.stop()
  }
  const pick = (key) => median(results.map((result) => result[key]))
  const lost = results.reduce((sum, result) => sum + result.lost + result.disorder, 0)
  const table = [
    `Machine: ${require('node:os').cpus()[0].model.trim()} (${require('node:os').cpus().length} cores), Node.js ` +
      `${process.version}, ${new Date().toISOString().slice(0, 10)}. Medians of ${runs} runs.`,
    `Publish on instance A, ${subscribers.toLocaleString('en-US')} subscribers on instance B (h2c), one redis-server, ` +
      'all on loopback.',
    '',
    '| measure | value |',
    '| --- | --- |',
    `| throughput: ${events.toLocaleString('en-US')} events as fast as A publishes | ` +
      `${Math.round(pick('eventsPerSecond')).toLocaleString('en-US')} events/s ` +
      `(${Math.round(pick('deliveriesPerSecond')).toLocaleString('en-US')} deliveries/s) |`,
    `| latency, publish on A to receipt on B, at ${rate} events/s: p50 | ${pick('p50').toFixed(2)} ms |`,
    `| latency at ${rate} events/s: p99 | ${pick('p99').toFixed(2)} ms |`,
    `| latency during the throughput run: p99 | ${pick('burstP99').toFixed(1)} ms |`,
    `| events lost or out of order, all runs | ${lost} |`,
    ''
  ].join('\n')
  console.log(`\n${table}`)
  let scaleTable = ''
  if (!args.includes('--no-scale')) {
    const scale = require('./redis-scale')
    const quick = args.includes('--quick')
    const rows = await scale.main(quick ? { instances: [2], channels: [100, 10_000], patterns: ['user'] } : {})
    scaleTable = `\nThe live path at scale: ${rate} events/s for 10 s a row, to random channels, published by a process ` +
      'that follows none (bench/redis-scale.js).\n\n' + [scale.HEADER, ...rows.map(scale.line)].join('\n') + '\n'
    if (rows.some((row) => row.lost + row.repeatedOrReordered > 0)) process.exitCode = 1
  }
  writeFileSync(join(__dirname, 'results', 'redis.md'), table + scaleTable)
  if (lost > 0) process.exitCode = 1
}

if (args[0] === 'instance') instance(args[1])
else if (args[0] === 'client') client(args[1], Number(args[2]))
else main()

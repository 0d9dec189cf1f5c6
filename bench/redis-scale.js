'use strict'

// The Redis store's live path at scale: what Redis and each instance pay as the channels followed grow, not only
// the events. One row per design question: K instance processes (1, 2, 4) on one redis-server, each following N
// channels (100, 1,000, 10,000), each channel with one subscriber stream (h2c) on the instance, and a publisher (a
// process of its own, following nothing) publishing a steady rate of events to random channels:
//   user:   each instance follows channels of its own (a channel per user): an event has one delivery;
//   shared: every instance follows the same N channels: an event has K deliveries.
// Measured over the steady phase (after a warm-up): redis-server's CPU (INFO CPU, user + sys) per event and as a
// share of a core; the instances' CPU (process.cpuUsage) per delivery; publish-to-receipt latency (publish call in
// the publisher to the event parsed by the load client) p50 and p99; and every stream checked: each channel's
// events numbered from 0 must arrive once, in order (lost, repeated or out of order are counted).
//   node bench/redis-scale.js [--dist <dir of the build>] [--instances 1,2,4] [--channels 100,1000,10000]
//     [--patterns user,shared] [--rate 200] [--seconds 10] [--out <file.json>]
// `--dist` measures another build (an older design): `--dist /tmp/old/dist`.

const { fork } = require('node:child_process')
const { startRedis: startRedisServer } = require('./redis-server')
const { once } = require('node:events')
const { resolve } = require('node:path')
const { writeFileSync } = require('node:fs')
const http2 = require('node:http2')

// The monotonic clock, the same in every process of the machine (performance.timeOrigin can differ by ms between
// processes started under load).
const now = () => Number(process.hrtime.bigint()) / 1e6
const args = process.argv.slice(2)
const option = (name, fallback) => {
  const i = args.indexOf(name)
  return i === -1 ? fallback : args[i + 1]
}
const list = (name, fallback) => option(name, fallback).split(',')
const STREAMS_PER_SESSION = 500

// ---- an instance: a Fastify app with the Redis store, one route per channel ---------------------------------------
async function instance (dist, redisUrl) {
  const Fastify = require('fastify')
  const sse = require(resolve(dist, 'index.js'))
  const { RedisStore } = require(resolve(dist, 'redis.js'))
  const app = Fastify({ http2: true })
  await app.register(sse, { store: new RedisStore({ redis: redisUrl }), heartbeatInterval: 0 })
  app.get('/c/:name', (request, reply) => reply.sse(app.sse.channel(request.params.name)))
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  // How long the event loop was held (what a delivery waits for when the instance is busy), between two 'cpu' asks.
  const loop = require('node:perf_hooks').monitorEventLoopDelay({ resolution: 5 })
  loop.enable()
  process.on('message', async (message) => {
    if (message.type === 'cpu') {
      const { user, system } = process.cpuUsage()
      process.send({ type: 'cpu', us: user + system, loopP99: loop.percentile(99) / 1e6, loopMax: loop.max / 1e6 })
      loop.reset()
    } else if (message.type === 'close') {
      await app.close()
      process.exit(0)
    }
  })
  process.send({ type: 'listening', address })
}

// ---- the publisher: a store that follows nothing, publishing `<n> <time>` to random channels at a steady rate -----
async function publisher (dist, redisUrl) {
  const Fastify = require('fastify')
  const sse = require(resolve(dist, 'index.js'))
  const { RedisStore } = require(resolve(dist, 'redis.js'))
  const app = Fastify()
  await app.register(sse, { store: new RedisStore({ redis: redisUrl }), heartbeatInterval: 0 })
  await app.ready()
  const counts = new Map()
  process.on('message', async (message) => {
    if (message.type === 'publish') {
      const { names, rate, count } = message
      const started = now()
      const pending = []
      let failed = 0
      for (let i = 0; i < count; i++) {
        const due = started + (i * 1000) / rate
        if (due > now()) await new Promise((resolve) => setTimeout(resolve, due - now()))
        const name = names[Math.floor(Math.random() * names.length)]
        const n = counts.get(name) ?? 0
        counts.set(name, n + 1)
        pending.push(app.sse.channel(name).publish(`${n} ${now()}`).catch(() => { failed++ }))
      }
      await Promise.all(pending)
      process.send({ type: 'published', failed, counts: Object.fromEntries(counts) })
    } else if (message.type === 'close') {
      await app.close()
      process.exit(0)
    }
  })
  process.send({ type: 'ready' })
}

// ---- the load client: the subscriber streams of every instance, each checked -------------------------------------
async function client () {
  const streams = new Map()
  let latencies = []
  let expected = Infinity
  let received = 0
  let waiter
  const open = async (origin, names) => {
    const sessions = []
    for (let i = 0; i < Math.ceil(names.length / STREAMS_PER_SESSION); i++) {
      const session = http2.connect(origin, { settings: { initialWindowSize: 1024 * 1024 } })
      session.on('error', () => {})
      await once(session, 'remoteSettings')
      sessions.push(session)
    }
    for (let from = 0; from < names.length; from += 200) {
      await Promise.all(names.slice(from, from + 200).map(async (name, j) => {
        const stream = sessions[Math.floor((from + j) / STREAMS_PER_SESSION)].request({ ':path': `/c/${name}` })
        stream.setEncoding('utf8')
        const state = { name, next: 0, skipped: 0, backward: 0, rest: '' }
        streams.set(stream, state)
        stream.on('data', (chunk) => {
          const at = now()
          const text = state.rest + chunk
          let start = 0
          let end
          while ((end = text.indexOf('\n\n', start)) !== -1) {
            const data = text.indexOf('data: ', start)
            if (data !== -1 && data < end) {
              const line = text.slice(data + 6, text.indexOf('\n', data))
              const space = line.indexOf(' ')
              const n = Number(line.slice(0, space))
              if (n === state.next) state.next++
              else if (n > state.next) {
                state.skipped += n - state.next
                state.next = n + 1
              } else state.backward++
              latencies.push(at - Number(line.slice(space + 1)))
              if (++received >= expected) waiter?.()
            }
            start = end + 2
          }
          state.rest = text.slice(start)
        })
        stream.on('error', () => {})
        await once(stream, 'response')
      }))
    }
  }
  process.on('message', async (message) => {
    if (message.type === 'open') {
      await open(message.origin, message.names)
      process.send({ type: 'opened' })
    } else if (message.type === 'expect') {
      expected = message.deliveries
      if (received >= expected) process.send({ type: 'arrived' })
      else {
        const timer = setTimeout(() => waiter?.(), message.timeoutMs)
        waiter = () => {
          waiter = undefined
          clearTimeout(timer)
          process.send({ type: 'arrived' })
        }
      }
    } else if (message.type === 'reset') {
      latencies = []
      received = 0
      expected = Infinity
      process.send({ type: 'reset' })
    } else if (message.type === 'report') {
      latencies.sort((a, b) => a - b)
      const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]
      // Each stream's count against what was published to its channel (counted from the start, warm-up included).
      let lost = 0
      let skipped = 0
      let backward = 0
      for (const state of streams.values()) {
        const published = message.counts[state.name] ?? 0
        lost += Math.max(0, published - state.next) + state.skipped
        skipped += state.skipped
        backward += state.backward
      }
      process.send({ type: 'report', received, p50: at(0.5), p99: at(0.99), lost, skipped, backward })
    } else if (message.type === 'close') {
      process.exit(0)
    }
  })
  process.send({ type: 'ready' })
}

// ---- the runner -----------------------------------------------------------------------------------------------
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
  const ask = async (message, answer = message.type) => {
    const answered = next(answer)
    proc.send(message)
    return await answered
  }
  return { proc, next, ask }
}

async function startRedis () {
  const redis = await startRedisServer()
  const { Redis } = require('ioredis')
  const admin = new Redis({ port: redis.port, host: '127.0.0.1' })
  return { url: redis.url, admin, stop: () => { admin.disconnect(); redis.stop() } }
}

/** redis-server's CPU seconds so far, its bytes in and out, and the calls and time of each command. */
async function redisCounters (admin) {
  const info = await admin.info('all')
  const field = (name) => Number((new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info) ?? [])[1] ?? 0)
  const commands = {}
  for (const [, name, calls, usec] of info.matchAll(/^cmdstat_(\S+):calls=(\d+),usec=(\d+)/gm)) {
    commands[name] = { calls: Number(calls), usec: Number(usec) }
  }
  return {
    cpu: field('used_cpu_user') + field('used_cpu_sys'),
    bytesIn: field('total_net_input_bytes'),
    bytesOut: field('total_net_output_bytes'),
    commands
  }
}

function channelNames (pattern, instances, channels) {
  return Array.from({ length: instances }, (_, i) =>
    Array.from({ length: channels }, (_, c) => pattern === 'user' ? `u${i}-${c}` : `s${c}`))
}

async function row ({ dist, instances: K, channels: N, pattern, rate, seconds }) {
  const redis = await startRedis()
  const procs = []
  try {
    const nodes = Array.from({ length: K }, () => child('instance', dist, redis.url))
    const pub = child('publisher', dist, redis.url)
    const load = child('client')
    procs.push(...nodes, pub, load)
    const origins = (await Promise.all(nodes.map(async (node) => await node.next('listening')))).map((answer) => answer.address)
    await Promise.all([pub.next('ready'), load.next('ready')])
    const names = channelNames(pattern, K, N)
    for (let i = 0; i < K; i++) await load.ask({ type: 'open', origin: origins[i], names: names[i] }, 'opened')
    const all = [...new Set(names.flat())]
    const perEvent = pattern === 'user' ? 1 : K
    // Warm-up: two seconds at the rate, all delivered before anything is measured.
    const warm = Math.round(rate * 2)
    await load.ask({ type: 'reset' })
    const arrivedWarm = load.ask({ type: 'expect', deliveries: warm * perEvent, timeoutMs: 30_000 }, 'arrived')
    await pub.ask({ type: 'publish', names: all, rate, count: warm }, 'published')
    await arrivedWarm
    await load.ask({ type: 'reset' })
    const cpu = async () => await Promise.all(nodes.map(async (node) => await node.ask({ type: 'cpu' })))
    const [redisBefore, cpuBefore] = [await redisCounters(redis.admin), (await cpu()).map((answer) => answer.us)]
    const started = now()
    const count = Math.round(rate * seconds)
    const arrived = load.ask({ type: 'expect', deliveries: count * perEvent, timeoutMs: 10_000 + seconds * 1000 }, 'arrived')
    const { failed, counts } = await pub.ask({ type: 'publish', names: all, rate, count }, 'published')
    await arrived
    const wall = (now() - started) / 1000
    const [redisAfter, answers] = [await redisCounters(redis.admin), await cpu()]
    const report = await load.ask({ type: 'report', counts })
    const instanceUs = answers.reduce((sum, answer, i) => sum + answer.us - cpuBefore[i], 0)
    const commands = {}
    for (const [name, { calls, usec }] of Object.entries(redisAfter.commands)) {
      const before = redisBefore.commands[name] ?? { calls: 0, usec: 0 }
      if (calls > before.calls) commands[name] = { perEvent: (calls - before.calls) / count, usPerEvent: (usec - before.usec) / count }
    }
    return {
      instances: K,
      channels: N,
      pattern,
      events: count,
      failed,
      deliveries: report.received,
      redisUsPerEvent: ((redisAfter.cpu - redisBefore.cpu) * 1e6) / count,
      redisCore: (redisAfter.cpu - redisBefore.cpu) / wall,
      bytesInPerEvent: (redisAfter.bytesIn - redisBefore.bytesIn) / count,
      bytesOutPerEvent: (redisAfter.bytesOut - redisBefore.bytesOut) / count,
      instanceUsPerDelivery: instanceUs / Math.max(1, report.received),
      p50: report.p50,
      p99: report.p99,
      instanceLoopP99: Math.max(...answers.map((answer) => answer.loopP99)),
      instanceLoopMax: Math.max(...answers.map((answer) => answer.loopMax)),
      lost: report.lost,
      repeatedOrReordered: report.backward,
      commands
    }
  } finally {
    for (const { proc } of procs) proc.kill()
    redis.stop()
  }
}

const fixed = (value, digits) => value === undefined ? 'n/a' : value.toFixed(digits)

function line (result) {
  return `| ${result.instances} | ${result.channels.toLocaleString('en-US')} | ${result.pattern} | ` +
    `${fixed(result.redisUsPerEvent, 0)} | ${fixed(result.redisCore * 100, 1)}% | ${fixed(result.instanceUsPerDelivery, 0)} | ` +
    `${fixed(result.p50, 1)} | ${fixed(result.p99, 1)} | ${result.lost} / ${result.repeatedOrReordered} |`
}

const HEADER = '| instances | channels each | channels | Redis µs/event | Redis, share of a core | instance µs/delivery | ' +
  'p50 ms | p99 ms | lost / repeated or reordered |\n| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |'

/** The rows asked for (the command line's, unless `only` says), printed as they come; `--out` saves them. */
async function main (only = {}) {
  const dist = resolve(option('--dist', resolve(__dirname, '../dist')))
  const rate = Number(option('--rate', '200'))
  const seconds = Number(option('--seconds', '10'))
  const results = []
  console.log(`${dist}: ${rate} events/s for ${seconds} s a row\n\n${HEADER}`)
  for (const pattern of only.patterns ?? list('--patterns', 'user,shared')) {
    for (const channels of only.channels ?? list('--channels', '100,1000,10000').map(Number)) {
      for (const instances of only.instances ?? list('--instances', '1,2,4').map(Number)) {
        const result = await row({ dist, instances, channels, pattern, rate, seconds })
        results.push(result)
        console.log(line(result))
      }
    }
  }
  const out = option('--out', undefined)
  if (out !== undefined) writeFileSync(out, JSON.stringify({ dist, rate, seconds, date: new Date().toISOString(), results }, null, 2))
  return results
}

module.exports = { main, HEADER, line }

if (args[0] === 'instance') instance(args[1], args[2])
else if (args[0] === 'publisher') publisher(args[1], args[2])
else if (args[0] === 'client') client()
else if (require.main === module) main().catch((error) => { console.error(error); process.exit(1) })

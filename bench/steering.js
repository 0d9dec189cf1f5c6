'use strict'

// Steering across instances (docs/steering.md), measured: three instances as processes, each with its own Redis
// connections, on one redis-server on a free port; streams opened by client processes of their own over h2c.
//   node bench/steering.js [--streams 10000] [--instances 3] [--rounds 30]
// It reports:
//   - Redis commands per instance per second at rest, with every stream open (INFO commandstats over 10 s);
//   - the latency of an action sent from one instance and applied by all: count(), subscribe(), unsubscribe() as the
//     sender sees them resolve, and close() of a tag whose one stream is on another instance until its client sees it
//     end (medians and the worst of --rounds);
//   - tagged('all').close() over every stream: when the promise resolved, and when the last client saw its stream end;
//   - an instance SIGKILLed: how long until presence() on another no longer counts its streams, and until an action no
//     longer waits for it.
// FASTIFY_SSE_H2_BUILD=DIR loads another build of fastify-sse-h2 (a copy of dist/), to compare two.

const { fork } = require('node:child_process')
const { startRedis } = require('./redis-server')
const http2 = require('node:http2')
const { setTimeout: sleep } = require('node:timers/promises')

const args = process.argv.slice(2)
const value = (name, fallback) => {
  const i = args.indexOf(name)
  return i === -1 ? fallback : Number(args[i + 1])
}
const now = () => performance.timeOrigin + performance.now()
const STREAMS_PER_CONNECTION = 100

/** One instance: the plugin over the Redis store, a route of tagged channel streams, steering asked over IPC. */
async function instance (redisUrl) {
  const Fastify = require('fastify')
  const sse = require(process.env.FASTIFY_SSE_H2_BUILD ? require('node:path').resolve(process.env.FASTIFY_SSE_H2_BUILD) : '..')
  const { RedisStore } = require(process.env.FASTIFY_SSE_H2_BUILD
    ? require('node:path').resolve(process.env.FASTIFY_SSE_H2_BUILD, 'redis')
    : '../dist/redis')
  const app = Fastify({ http2: true })
  await app.register(sse, { store: new RedisStore({ redis: redisUrl }), heartbeatInterval: 30_000 })
  app.get('/s', (request, reply) => reply.sse(app.sse.channel('room'), { tags: request.query.tags.split(',') }))
  await app.listen({ port: 0, host: '127.0.0.1' })
  process.on('message', async ({ ask, action, tag, channel }) => {
    const started = now()
    const result = action === 'presence'
      ? await app.sse.channel(channel).presence()
      : await app.sse.tagged(tag)[action](channel === undefined ? undefined : app.sse.channel(channel))
    process.send({ ask, result, at: started, ms: now() - started })
  })
  process.send({ port: app.server.address().port })
}

/** A client process: opens its streams, and says when each ends. */
async function client (ports, first, count) {
  const sessions = []
  const streams = []
  const ended = new Map()
  let watching = new Set()
  let opened = 0
  for (let i = 0; i < count; i++) {
    const n = first + i
    const port = ports[n % ports.length]
    const key = `${port}:${Math.floor(i / (STREAMS_PER_CONNECTION * ports.length))}`
    let session = sessions[key]
    if (session === undefined) {
      session = http2.connect(`http://127.0.0.1:${port}`)
      session.on('error', () => {})
      sessions[key] = session
    }
    const stream = session.request({ ':path': `/s?tags=all,u:${n}`, accept: 'text/event-stream' })
    stream.on('error', () => {})
    stream.on('response', () => { if (++opened === count) process.send({ opened }) })
    stream.resume()
    stream.on('close', () => {
      ended.set(n, now())
      if (watching.has(n)) {
        watching.delete(n)
        if (watching.size === 0) process.send({ ended: Math.max(...[...ended.values()]) })
      }
    })
    streams.push(stream)
  }
  process.on('message', ({ watch }) => {
    watching = new Set(watch.filter((n) => !ended.has(n)))
    if (watching.size === 0) process.send({ ended: Math.max(0, ...watch.map((n) => ended.get(n))) })
  })
}

function child (...argv) {
  const proc = fork(__filename, argv, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: ['--max-old-space-size=2048'] })
  const next = (key) => new Promise((resolve, reject) => {
    const onMessage = (message) => {
      if (!(key in message)) return
      proc.off('message', onMessage)
      resolve(message)
    }
    proc.on('message', onMessage)
    proc.once('exit', reject)
  })
  let asked = 0
  const ask = async (message) => {
    const id = ++asked
    const answer = new Promise((resolve) => {
      const onMessage = (reply) => {
        if (reply.ask !== id) return
        proc.off('message', onMessage)
        resolve(reply)
      }
      proc.on('message', onMessage)
    })
    proc.send({ ...message, ask: id })
    return await answer
  }
  return { proc, next, ask }
}

/** Calls of each command Redis has run, as INFO commandstats says. */
async function commandCalls (admin) {
  const info = await admin.info('commandstats')
  const calls = {}
  for (const [, name, count] of info.matchAll(/cmdstat_([^:]+):calls=(\d+)/g)) calls[name] = Number(count)
  return calls
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
const ms = (value) => `${value.toFixed(1)} ms`

async function main () {
  const STREAMS = value('--streams', 10_000)
  const INSTANCES = value('--instances', 3)
  const ROUNDS = value('--rounds', 30)
  const { Redis } = require('ioredis')
  const redis = await startRedis()
  const admin = new Redis(redis.url)
  const instances = Array.from({ length: INSTANCES }, () => child('--instance', redis.url))
  const ports = (await Promise.all(instances.map((one) => one.next('port')))).map((message) => message.port)
  const CLIENTS = 2
  const clients = Array.from({ length: CLIENTS }, (_, c) => child('--client', JSON.stringify(ports),
    String(c * STREAMS / CLIENTS), String(STREAMS / CLIENTS)))
  const opening = now()
  await Promise.all(clients.map((one) => one.next('opened')))
  process.stderr.write(`  ${STREAMS} streams open in ${ms(now() - opening)}\n`)
  const rows = []
  const row = (what, figure) => {
    rows.push(`| ${what} | ${figure} |`)
    process.stderr.write(`  ${what}: ${figure}\n`)
  }
  // Each instance has joined (its tagged streams), and reports its channel's subscribers.
  await sleep(3000)
  row('presence() of the channel every stream is on', String((await instances[0].ask({ action: 'presence', channel: 'room' })).result.subscribers))

  // At rest, with every stream open.
  const before = await commandCalls(admin)
  await sleep(10_000)
  const after = await commandCalls(admin)
  const rest = Object.entries(after).map(([name, calls]) => [name, calls - (before[name] ?? 0)])
    .filter(([name, calls]) => calls > 0 && name !== 'info')
  // What the instances send (a script is one command); and what Redis runs, the scripts' own calls included.
  const sent = rest.filter(([name]) => ['evalsha', 'eval', 'ping', 'xread', 'publish', 'spublish'].includes(name))
  const perSecond = (list) => (list.reduce((sum, [, calls]) => sum + calls, 0) / 10 / INSTANCES).toFixed(2)
  row('Redis commands per instance per second, at rest, sent', `${perSecond(sent)} (${sent.map(([name, calls]) => `${name} ${calls}`).join(', ')} in 10 s, ${INSTANCES} instances)`)
  row('... run by Redis, the scripts\' calls included', `${perSecond(rest)} (${rest.map(([name, calls]) => `${name} ${calls}`).join(', ')})`)

  // Latency of actions sent from one instance, applied by all.
  const latencies = { count: [], subscribe: [], unsubscribe: [], close: [] }
  for (let round = 0; round < ROUNDS; round++) {
    const from = instances[round % INSTANCES]
    latencies.count.push((await from.ask({ action: 'count', tag: 'all' })).ms)
    latencies.subscribe.push((await from.ask({ action: 'subscribe', tag: `u:${round}`, channel: 'extra' })).ms)
    latencies.unsubscribe.push((await from.ask({ action: 'unsubscribe', tag: `u:${round}`, channel: 'extra' })).ms)
    // Stream n is on instance n % INSTANCES; closed from the next one, until its client sees it end.
    const n = STREAMS - 1 - round
    const owner = clients[Math.floor(n / (STREAMS / CLIENTS))]
    const ending = owner.next('ended')
    owner.proc.send({ watch: [n] })
    const asked = await instances[(n + 1) % INSTANCES].ask({ action: 'close', tag: `u:${n}` })
    latencies.close.push((await ending).ended - asked.at)
  }
  for (const [action, values] of Object.entries(latencies)) {
    row(`${action}() sent from one instance, ${action === 'close' ? 'until the client of the stream on another saw it end' : 'resolved (every instance answered)'}`,
      `median ${ms(median(values))}, worst ${ms(Math.max(...values))} (${ROUNDS} rounds)`)
  }

  // Every stream left, closed at once.
  const open = Array.from({ length: STREAMS - ROUNDS }, (_, n) => n)
  const endings = clients.map((one, c) => {
    const ending = one.next('ended')
    one.proc.send({ watch: open.filter((n) => Math.floor(n / (STREAMS / CLIENTS)) === c) })
    return ending
  })
  const closing = await instances[0].ask({ action: 'close', tag: 'all' })
  const last = Math.max(...(await Promise.all(endings)).map((message) => message.ended))
  row(`tagged('all').close() of ${open.length.toLocaleString('en-US')} streams on ${INSTANCES} instances: resolved`,
    `${ms(closing.ms)} (${closing.result.streams} streams, unanswered ${closing.result.unanswered.length})`)
  row('... until the last client saw its stream end', ms(last - closing.at))

  // An instance dies without a word.
  const survivor = instances[0]
  const reopen = child('--client', JSON.stringify(ports), String(STREAMS), String(300 * INSTANCES))
  await reopen.next('opened')
  const reported = async (subscribers) => {
    for (;;) {
      const { result } = await survivor.ask({ action: 'presence', channel: 'room' })
      if (result.subscribers === subscribers) return now()
      await sleep(50)
    }
  }
  await reported(300 * INSTANCES)
  const killed = now()
  instances[INSTANCES - 1].proc.kill('SIGKILL')
  const first = await survivor.ask({ action: 'count', tag: 'all' })
  row('an instance SIGKILLed: count() right after', `${first.result} (${first.ms.toFixed(0)} ms: it waited for the dead instance)`)
  const gone = await reported(300 * (INSTANCES - 1))
  row('... presence() no longer counts its streams', `${ms(gone - killed)} after it died`)
  for (;;) {
    const { result } = await survivor.ask({ action: 'unsubscribe', tag: 'all', channel: 'none' })
    if (result.unanswered.length === 0) break
  }
  row('... an action no longer waits for it', `${ms(now() - killed)} after it died`)

  console.log(`Steering, ${INSTANCES} instances as processes on one redis-server, ${STREAMS.toLocaleString('en-US')} streams over h2c, ` +
    `${new Date().toISOString().slice(0, 10)}\n\n| | |\n| --- | --- |\n${rows.join('\n')}`)
  for (const one of [...instances, ...clients, reopen]) one.proc.kill()
  admin.disconnect()
  redis.stop()
}

if (args[0] === '--instance') instance(args[1])
else if (args[0] === '--client') client(JSON.parse(args[1]), Number(args[2]), Number(args[3]))
else main().catch((error) => { console.error(error); process.exit(1) })

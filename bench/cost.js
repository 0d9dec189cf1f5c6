'use strict'

// A fixed amount of work, for counting what it costs rather than timing it: `valgrind --tool=callgrind` counts
// instructions (which the noise of a shared machine hardly moves), `/usr/bin/time -v` the CPU time. The servers and
// their routes are the bench's (bench/targets.js), the client's windows and parser too (bench/client.js).
//   node bench/cost.js pull [--target fastify-sse-h2] [--streams 4] [--count 20000] [--apart]
//   node bench/cost.js pull-json [...]   as pull, each event's data an object serialized as JSON (bench/targets.js)
//   node bench/cost.js fanout [--target fastify-sse-h2] [--subscribers 200] [--count 200] [--apart]
// The client runs in the server's process, or with --apart in a child process of its own, so that callgrind (which
// does not follow children) counts the server alone. Run it at two counts: the difference is the cost of the events
// without that of starting. FASTIFY_SSE_H2_BUILD=DIR has fastify-sse-h2 loaded from another build (a copy of dist/,
// say), to compare two. --cpu prints the CPU time this process used. It fails if an event is lost or comes out of order.

const { fork } = require('node:child_process')
const { StringDecoder } = require('node:string_decoder')
const { Counter, connect } = require('./client')

function option (args, name, fallback) {
  const i = args.indexOf(name)
  return i === -1 ? fallback : args[i + 1]
}

/** Opens a stream and counts its events; `closed` resolves when it closes. */
function open (session, path, onEvent = () => {}) {
  const counter = new Counter(onEvent)
  const decoder = new StringDecoder('utf8')
  const stream = session.request({ ':path': path, accept: 'text/event-stream' })
  stream.on('data', (chunk) => counter.feed(decoder.write(chunk)))
  counter.closed = new Promise((resolve, reject) => {
    stream.on('close', resolve)
    stream.on('error', reject)
  })
  return counter
}

/**
 * The client's part: opens the streams, calls `subscribed()` once a fan-out's subscribers are open (the server then
 * publishes), and resolves with the events counted once all are in.
 */
async function client (port, scenario, { streams, subscribers, count }, subscribed) {
  const session = await connect(`http://127.0.0.1:${port}`)
  let counters
  if (scenario === 'pull' || scenario === 'pull-json') {
    const path = scenario === 'pull' ? `/pull?count=${count}&size=64` : `/pull-json?count=${count}`
    counters = Array.from({ length: streams }, () => open(session, path))
    await Promise.all(counters.map((counter) => counter.closed))
  } else {
    const expected = subscribers * count
    let received = 0
    let done
    const all = new Promise((resolve) => { done = resolve })
    counters = Array.from({ length: subscribers }, () => open(session, '/sub', () => { if (++received === expected) done() }))
    // The server publishes once it counts them all.
    subscribed()
    await all
  }
  session.destroy()
  return {
    received: counters.reduce((sum, counter) => sum + counter.events, 0),
    disorder: counters.reduce((sum, counter) => sum + counter.disorder, 0)
  }
}

async function server (scenario, args) {
  const { targets } = require('./targets')
  const target = option(args, '--target', 'fastify-sse-h2')
  const sizes = {
    streams: Number(option(args, '--streams', 4)),
    subscribers: Number(option(args, '--subscribers', 200)),
    count: Number(option(args, '--count', scenario.startsWith('pull') ? 20_000 : 200))
  }
  const expected = scenario.startsWith('pull') ? sizes.streams * sizes.count : sizes.subscribers * sizes.count
  const started = await targets[target]({ heartbeatInterval: 0 })
  const publish = async () => {
    while (started.subscribers() < sizes.subscribers) await new Promise((resolve) => setTimeout(resolve, 5))
    await started.publish(sizes.count, 64, false)
  }
  let result
  if (args.includes('--apart')) {
    const child = fork(__filename, ['client', scenario, String(started.port), JSON.stringify(sizes)])
    result = await new Promise((resolve, reject) => {
      child.on('message', (message) => { if (message === 'subscribed') publish().catch(reject); else resolve(message) })
      child.on('exit', (code) => reject(new Error(`the client exited with ${code}`)))
    })
  } else {
    result = await client(started.port, scenario, sizes, publish)
  }
  await started.close()
  if (args.includes('--cpu')) {
    const { user, system } = process.cpuUsage()
    console.log(`${target} ${scenario}: this process used ${Math.round((user + system) / 1000)} ms of CPU`)
  }
  if (result.received !== expected || result.disorder !== 0) {
    throw new Error(`${target}: ${result.received} of ${expected} events arrived, ${result.disorder} out of order`)
  }
}

const [scenario, ...args] = process.argv.slice(2)
if (scenario === 'client') {
  client(Number(args[1]), args[0], JSON.parse(args[2]), () => process.send('subscribed')).then(
    (result) => process.send(result, () => process.exit(0)),
    (error) => { console.error(error); process.exit(1) })
} else {
  const run = ['pull', 'pull-json', 'fanout'].includes(scenario)
    ? server(scenario, args)
    : Promise.reject(new Error(`unknown scenario ${scenario}: pull, pull-json or fanout`))
  // Exits at once: a peer's timers or sockets left open would keep the process (and callgrind) running.
  run.then(() => process.exit(0), (error) => {
    console.error(error)
    process.exit(1)
  })
}

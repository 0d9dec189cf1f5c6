'use strict'

// A fixed amount of work, for counting what it costs rather than timing it: `valgrind --tool=callgrind` counts
// instructions (which the noise of a shared machine hardly moves), `/usr/bin/time -v` the CPU time. The servers and
// their routes are the bench's (bench/targets.js), the client's windows and parser too (bench/client.js).
//   node bench/cost.js pull [--target fastify-sse-h2] [--streams 4] [--count 20000] [--apart]
//   node bench/cost.js pull-json [...]   as pull, each event's data an object serialized as JSON (bench/targets.js)
//   node bench/cost.js fanout [--target fastify-sse-h2] [--subscribers 200] [--count 200] [--bursts 1] [--apart | --client]
//   node bench/cost.js heartbeat [--target fastify-sse-h2] [--streams 2000] [--count 10] [--apart]   --count rounds of
//     heartbeats (a comment every 100 ms) to idle streams; the client stops once each stream has had that many
//   node bench/cost.js channels [--shape many|one] [--pages 200] [--count 20] [--bursts 1] [--apart]   fastify-sse-h2
//     alone: pages of 10 channels, each page one stream of them all (many) or 10 streams of one (one), --count
//     events published to each channel per burst (bench:channels, counted)
// The client runs in the server's process, or with --apart in a child process of its own, so that callgrind (which
// does not follow children) counts the server alone; with --client it is the server that runs in a child, and the
// client alone is counted: what a target's bytes cost the one who reads them. Run it at two counts: the difference is
// the cost of the events without that of starting. A fan-out of --bursts N publishes its count N times, each once the
// last is in: two bursts less one is what one costs, the writes to every subscriber included. --connections N spreads
// the streams over N connections (default 1). FASTIFY_SSE_H2_BUILD=DIR has fastify-sse-h2 loaded from another build (a copy of dist/,
// say), to compare two. --cpu prints the CPU time this process used. It fails if an event is lost or comes out of order.

const { fork } = require('node:child_process')
const { once } = require('node:events')
const { StringDecoder } = require('node:string_decoder')
const { Counter, connect } = require('./client')
const { PAGE_CHANNELS } = require('./targets')

const HEARTBEAT_MS = 100

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
async function client (port, scenario, { streams, subscribers, count, bursts, connections, pages, shape }, subscribed) {
  const sessions = await Promise.all(Array.from({ length: connections }, () => connect(`http://127.0.0.1:${port}`)))
  const session = (i) => sessions[i % connections]
  let counters
  if (scenario === 'pull' || scenario === 'pull-json') {
    const path = scenario === 'pull' ? `/pull?count=${count}&size=64` : `/pull-json?count=${count}`
    counters = Array.from({ length: streams }, (_, i) => open(session(i), path))
    await Promise.all(counters.map((counter) => counter.closed))
  } else if (scenario === 'channels') {
    let received = 0
    let expected = 0
    let done
    const many = shape === 'many'
    counters = []
    for (let page = 0; page < pages; page++) {
      for (let i = 0; i < (many ? 1 : PAGE_CHANNELS); i++) {
        // Whose events interleave channel by channel: their order is each channel's, not the counter's.
        counters.push(open(session(page), many ? '/page' : `/page/${i}`, () => { if (++received === expected) done() }))
      }
    }
    for (let burst = 0; burst < bursts; burst++) {
      expected += pages * PAGE_CHANNELS * count
      const all = new Promise((resolve) => { done = resolve })
      subscribed(burst)
      await all
    }
    for (const counter of counters) counter.disorder = 0
  } else if (scenario === 'heartbeat') {
    counters = Array.from({ length: streams }, (_, i) => open(session(i), '/idle'))
    await new Promise((resolve) => {
      const timer = setInterval(() => {
        if (counters.every((counter) => counter.comments >= count)) resolve(clearInterval(timer))
      }, 20)
    })
  } else {
    let received = 0
    let expected = 0
    let done
    counters = Array.from({ length: subscribers }, (_, i) => open(session(i), '/sub', () => { if (++received === expected) done() }))
    for (let burst = 0; burst < bursts; burst++) {
      expected += subscribers * count
      const all = new Promise((resolve) => { done = resolve })
      // The server publishes once it counts them all, and each burst once the last is in.
      subscribed(burst)
      await all
    }
  }
  for (const each of sessions) each.destroy()
  return {
    received: counters.reduce((sum, counter) => sum + counter.events, 0),
    disorder: counters.reduce((sum, counter) => sum + counter.disorder, 0)
  }
}

async function server (scenario, args) {
  const { targets } = require('./targets')
  const target = option(args, '--target', 'fastify-sse-h2')
  const sizes = {
    streams: Number(option(args, '--streams', scenario === 'heartbeat' ? 2000 : 4)),
    subscribers: Number(option(args, '--subscribers', 200)),
    count: Number(option(args, '--count', scenario.startsWith('pull') ? 20_000 : { heartbeat: 10, channels: 20 }[scenario] ?? 200)),
    pages: Number(option(args, '--pages', 200)),
    shape: option(args, '--shape', 'many'),
    bursts: Number(option(args, '--bursts', 1)),
    connections: Number(option(args, '--connections', 1))
  }
  const expected = scenario.startsWith('pull')
    ? sizes.streams * sizes.count
    : scenario === 'heartbeat'
      ? 0
      : (scenario === 'channels' ? sizes.pages * PAGE_CHANNELS : sizes.subscribers) * sizes.count * sizes.bursts
  let result
  if (args.includes('--client')) {
    const child = fork(__filename, ['serve', scenario, ...args.filter((arg) => arg !== '--client')])
    const exited = new Promise((resolve, reject) => child.on('exit', (code) => reject(new Error(`the server exited with ${code}`))))
    const [port] = await Promise.race([once(child, 'message'), exited])
    result = await Promise.race([client(port, scenario, sizes, (burst) => child.send(burst)), exited])
    child.kill()
    return check(result)
  }
  const started = await targets[target]({ heartbeatInterval: scenario === 'heartbeat' ? HEARTBEAT_MS : 0 })
  const publish = async (burst) => {
    const subscribers = scenario === 'channels' ? sizes.pages * PAGE_CHANNELS : sizes.subscribers
    while (started.subscribers() < subscribers) await new Promise((resolve) => setTimeout(resolve, 5))
    if (scenario === 'channels') await started.publishPages(sizes.count, burst * sizes.count)
    else await started.publish(sizes.count, 64, false, burst * sizes.count)
  }
  if (args.includes('--apart')) {
    const child = fork(__filename, ['client', scenario, String(started.port), JSON.stringify(sizes)])
    result = await new Promise((resolve, reject) => {
      child.on('message', (message) => { if (typeof message === 'number') publish(message).catch(reject); else resolve(message) })
      child.on('exit', (code) => reject(new Error(`the client exited with ${code}`)))
    })
  } else {
    result = await client(started.port, scenario, sizes, publish)
  }
  // Heartbeats written, by the targets that count them: a round or two more than the client waited for may go out.
  if (scenario === 'heartbeat') console.log(`${target}: ${started.heartbeats?.()} heartbeats written`)
  await started.close()
  if (args.includes('--cpu')) {
    const { user, system } = process.cpuUsage()
    console.log(`${target} ${scenario}: this process used ${Math.round((user + system) / 1000)} ms of CPU`)
  }
  check(result)

  function check (result) {
    if (result.received !== expected || result.disorder !== 0) {
      throw new Error(`${target}: ${result.received} of ${expected} events arrived, ${result.disorder} out of order`)
    }
  }
}

/** The server of `--client`, in a child: it says its port, and publishes when told. */
async function serve (args) {
  const { targets } = require('./targets')
  const started = await targets[option(args, '--target', 'fastify-sse-h2')]({ heartbeatInterval: 0 })
  const subscribers = Number(option(args, '--subscribers', 200))
  process.on('message', async (burst) => {
    while (started.subscribers() < subscribers) await new Promise((resolve) => setTimeout(resolve, 5))
    const count = Number(option(args, '--count', 200))
    await started.publish(count, 64, false, burst * count)
  })
  process.send(started.port)
}

const [scenario, ...args] = process.argv.slice(2)
if (scenario === 'serve') {
  serve(args.slice(1)).catch((error) => {
    console.error(error)
    process.exit(1)
  })
} else if (scenario === 'client') {
  client(Number(args[1]), args[0], JSON.parse(args[2]), (burst) => process.send(burst)).then(
    (result) => process.send(result, () => process.exit(0)),
    (error) => { console.error(error); process.exit(1) })
} else {
  const run = ['pull', 'pull-json', 'fanout', 'heartbeat', 'channels'].includes(scenario)
    ? server(scenario, args)
    : Promise.reject(new Error(`unknown scenario ${scenario}: pull, pull-json, fanout, heartbeat or channels`))
  // Exits at once: a peer's timers or sockets left open would keep the process (and callgrind) running.
  run.then(() => process.exit(0), (error) => {
    console.error(error)
    process.exit(1)
  })
}

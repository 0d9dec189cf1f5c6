'use strict'

// `npm run bench`: every target, every scenario, several interleaved rounds, one load client.
// Figures are medians; each is also given as a ratio to the raw node:http2 server of the same run.
//   --runs N          rounds (default 3)
//   --quick           smaller sizes, one round: a smoke run
//   --only a,b        scenarios (pull, fanout, idle, heartbeat, churn)
//   --targets a,b     targets (raw, fastify-sse-h2, @fastify/sse, fastify-sse-v2, better-sse)

const { fork } = require('node:child_process')
const { join } = require('node:path')
const { targets } = require('./targets')
const { writeResults } = require('./report')

const args = process.argv.slice(2)
const flag = (name) => args.includes(name)
const value = (name, fallback) => {
  const i = args.indexOf(name)
  return i === -1 ? fallback : args[i + 1]
}
const quick = flag('--quick')
const runs = Number(value('--runs', quick ? 1 : 3))
const targetNames = value('--targets', Object.keys(targets).join(',')).split(',')
const scale = quick ? 0.1 : 1

const SCENARIOS = {
  pull: {
    what: 'pull: 40 streams over 4 connections, 25,000 events of 64 bytes each',
    unit: 'events/s',
    higherIsBetter: true,
    heartbeat: 0,
    client: { streams: 40, connections: 4, count: Math.round(25_000 * scale), size: 64 }
  },
  fanout: {
    what: 'fan-out: 2,000 subscribers, 500 events of 64 bytes',
    unit: 'deliveries/s',
    higherIsBetter: true,
    heartbeat: 0,
    client: { subscribers: Math.round(2000 * (quick ? 0.25 : 1)), connections: 20, count: Math.round(500 * scale) || 50, size: 64 }
  },
  idle: {
    what: 'idle memory: 10,000 open streams',
    unit: 'bytes/stream (RSS)',
    higherIsBetter: false,
    heartbeat: 0,
    client: { streams: Math.round(10_000 * (quick ? 0.2 : 1)), connections: 10 }
  },
  heartbeat: {
    what: 'heartbeat CPU: 10,000 idle streams, a heartbeat each second',
    unit: 'CPU ms/round',
    higherIsBetter: false,
    heartbeat: 1000,
    seconds: quick ? 3 : 6,
    client: { streams: Math.round(10_000 * (quick ? 0.2 : 1)), connections: 10 }
  },
  churn: {
    what: 'churn: streams opened and dropped (RST) per second, 50 at a time',
    unit: 'streams/s',
    higherIsBetter: true,
    heartbeat: 0,
    client: { seconds: quick ? 2 : 5, concurrency: 50 }
  }
}
const scenarioNames = value('--only', Object.keys(SCENARIOS).join(',')).split(',')

/** A child process that answers request messages ({ id } -> { reply: id }) over IPC. */
function child (script, argv, execArgv = []) {
  const proc = fork(join(__dirname, script), argv, { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  let next = 0
  const pending = new Map()
  proc.on('message', (message) => {
    if (message.reply !== undefined) {
      pending.get(message.reply)(message)
      pending.delete(message.reply)
    }
  })
  return {
    proc,
    request: (message) => new Promise((resolve) => {
      const id = next++
      pending.set(id, resolve)
      proc.send({ ...message, id })
    }),
    next: (predicate) => new Promise((resolve, reject) => {
      const onMessage = (message) => {
        if (!predicate(message)) return
        proc.removeListener('message', onMessage)
        proc.removeListener('exit', onExit)
        resolve(message)
      }
      const onExit = (code) => reject(new Error(`${script} exited (${code}) early`))
      proc.on('message', onMessage)
      proc.on('exit', onExit)
    })
  }
}

async function measure (scenarioName, targetName) {
  const scenario = SCENARIOS[scenarioName]
  // Peers' warnings (an UnsupportedWarning for the Connection header they set over HTTP/2, MaxListeners
  // warnings under fan-out) would flood the terminal: they are listed in bench/README.md instead.
  const server = child('server.js', [targetName, String(scenario.heartbeat)], ['--expose-gc', '--no-warnings'])
  try {
    const ready = await server.next((message) => message.ready !== undefined)
    if (!ready.ready) throw new Error(ready.error)
    const client = child('client.js', [JSON.stringify({ scenario: scenarioName === 'heartbeat' ? 'idle' : scenarioName, port: ready.port, ...scenario.client })])
    let baseline
    let measured
    client.proc.on('message', async (message) => {
      if (message.ready) {
        // fan-out: every subscriber has its headers; publish, and start the client's clock.
        const go = client.next((reply) => reply.go)
        client.proc.send({})
        await go
        const published = await server.request({ cmd: 'publish', count: scenario.client.count, size: scenario.client.size })
        if (published.error) console.error(published.error)
      } else if (message.baseline) {
        baseline = await server.request({ cmd: 'stats' })
        client.proc.send({})
      } else if (message.measure) {
        if (scenarioName === 'heartbeat') {
          const start = await server.request({ cmd: 'stats' })
          await new Promise((resolve) => setTimeout(resolve, scenario.seconds * 1000))
          const end = await server.request({ cmd: 'stats' })
          measured = { cpuMicros: end.cpuMicros - start.cpuMicros }
        } else {
          measured = await server.request({ cmd: 'stats' })
        }
        client.proc.send({})
      }
    })
    const done = await client.next((message) => message.result !== undefined || message.error !== undefined)
    if (done.error) throw new Error(done.error)
    const result = done.result
    if (scenarioName === 'pull' || scenarioName === 'fanout') {
      if (result.events !== result.expected || result.disorder > 0) {
        throw new Error(`${result.events} of ${result.expected} events, ${result.disorder} out of order`)
      }
      return { value: result.perSecond }
    }
    if (scenarioName === 'idle') {
      return { value: (measured.rss - baseline.rss) / result.streams, heap: (measured.heapUsed - baseline.heapUsed) / result.streams }
    }
    if (scenarioName === 'heartbeat') {
      return { value: measured.cpuMicros / 1000 / (scenario.seconds * 1000 / scenario.heartbeat) }
    }
    return { value: result.perSecond, heapAfter: measured.heapUsed - baseline.heapUsed, rssAfter: measured.rss - baseline.rss }
  } finally {
    server.proc.kill()
  }
}

function median (values) {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

async function main () {
  const results = {}
  for (const scenarioName of scenarioNames) {
    results[scenarioName] = {}
    for (let round = 0; round < runs; round++) {
      // Interleaved: each round measures every target once, so that noise spreads over all of them.
      for (const targetName of targetNames) {
        if (targetName === 'fastify-sse-v2' && scenarioName === 'heartbeat') continue
        const cell = (results[scenarioName][targetName] ??= { samples: [], extra: [], errors: [] })
        try {
          const { value: sample, ...extra } = await measure(scenarioName, targetName)
          cell.samples.push(sample)
          cell.extra.push(extra)
          process.stderr.write(`${scenarioName} ${targetName} round ${round + 1}: ${sample.toFixed(1)}\n`)
        } catch (error) {
          cell.errors.push(String(error.message).split('\n')[0])
          process.stderr.write(`${scenarioName} ${targetName} round ${round + 1}: FAILED ${error.message.split('\n')[0]}\n`)
        }
      }
    }
    for (const cell of Object.values(results[scenarioName])) {
      cell.median = cell.samples.length > 0 ? median(cell.samples) : undefined
      for (const key of Object.keys(cell.extra[0] ?? {})) cell[key] = median(cell.extra.map((extra) => extra[key]))
    }
    const raw = results[scenarioName].raw?.median
    for (const cell of Object.values(results[scenarioName])) {
      if (raw !== undefined && cell.median !== undefined) cell.ratio = cell.median / raw
    }
  }
  writeResults({ results, scenarios: SCENARIOS, runs, quick, targets: targetNames })
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})

'use strict'

// `npm run bench`: every target, every scenario, several interleaved rounds, one load client.
// Figures are medians; each is also given as a ratio to the raw node:http2 server of the same run.
//   --runs N          rounds (default 5)
//   --quick           smaller sizes, one round: a smoke run
//   --only a,b        scenarios (pull, fanout, fanout-4, idle, heartbeat, churn, pull-json, fanout-json)
//   --targets a,b     targets (raw, raw-batch, fastify-floor, fastify-sse-h2, fastify-sse-h2+schema, @fastify/sse, fastify-sse-v2, better-sse)
//   --profile         servers run with --cpu-prof; profiles go to bench/results/profiles/ (open them in Chrome DevTools)
//   --out DIR         where latest.md, latest.svg and latest.json go (default bench/results): a trial run's elsewhere

const { fork } = require('node:child_process')
const { join } = require('node:path')
const { setTimeout: sleep } = require('node:timers/promises')
const { targets } = require('./targets')
const { writeResults } = require('./report')

const args = process.argv.slice(2)
const flag = (name) => args.includes(name)
const value = (name, fallback) => {
  const i = args.indexOf(name)
  return i === -1 ? fallback : args[i + 1]
}
const quick = flag('--quick')
const profile = flag('--profile')
const runs = Number(value('--runs', quick ? 1 : 5))
const targetNames = value('--targets', Object.keys(targets).join(',')).split(',')
const scale = quick ? 0.1 : 1
const CELL_TIMEOUT_MS = quick ? 60_000 : 120_000
const PROFILES = join(__dirname, 'results', 'profiles')

const SCENARIOS = {
  pull: {
    what: `pull: 40 streams over 4 connections, ${(25_000 * scale).toLocaleString('en-US')} events of 64 bytes each, made lazily by an async generator`,
    unit: 'events/s',
    higherIsBetter: true,
    heartbeat: 0,
    client: { streams: 40, connections: 4, count: Math.round(25_000 * scale), size: 64 }
  },
  fanout: {
    what: `fan-out: ${quick ? 500 : '2,000'} subscribers over 20 connections, ${quick ? 50 : 500} events of 64 bytes published as fast as the API allows`,
    unit: 'deliveries/s',
    higherIsBetter: true,
    heartbeat: 0,
    client: { subscribers: quick ? 500 : 2000, connections: 20, count: quick ? 50 : 500, size: 64 }
  },
  'fanout-4': {
    what: `fan-out over 4 connections: ${quick ? 500 : '2,000'} subscribers, ${quick ? 50 : 500} events of 64 bytes published as fast as the API allows`,
    unit: 'deliveries/s',
    higherIsBetter: true,
    heartbeat: 0,
    runs: 'fanout',
    client: { subscribers: quick ? 500 : 2000, connections: 4, count: quick ? 50 : 500, size: 64 }
  },
  idle: {
    what: `idle memory: ${quick ? '2,000' : '10,000'} open streams over 10 connections, no heartbeat; (after GC, open) minus (after GC, before) per stream`,
    unit: 'bytes/stream (RSS)',
    higherIsBetter: false,
    heartbeat: 0,
    client: { streams: quick ? 2000 : 10_000, connections: 10 }
  },
  heartbeat: {
    what: `heartbeat CPU: ${quick ? '2,000' : '10,000'} idle streams, a heartbeat each second, server CPU over ${quick ? 3 : 10} s per round`,
    unit: 'CPU ms/round',
    higherIsBetter: false,
    heartbeat: 1000,
    seconds: quick ? 3 : 10,
    client: { streams: quick ? 2000 : 10_000, connections: 10 }
  },
  // Object data: JSON.stringify (raw, fastify-sse-h2) against an event schema (fastify-sse-h2+schema).
  'pull-json': {
    what: `pull, JSON data: 40 streams over 4 connections, ${(25_000 * scale).toLocaleString('en-US')} events whose data is an object of 5 fields (about 70 bytes as JSON)`,
    unit: 'events/s',
    higherIsBetter: true,
    heartbeat: 0,
    runs: 'pull',
    client: { streams: 40, connections: 4, count: Math.round(25_000 * scale), size: 0, path: '/pull-json' }
  },
  'fanout-json': {
    what: `fan-out, JSON data: ${quick ? 500 : '2,000'} subscribers over 20 connections, ${quick ? 50 : 500} events whose data is an object of 5 fields, published as fast as the API allows`,
    unit: 'deliveries/s',
    higherIsBetter: true,
    heartbeat: 0,
    runs: 'fanout',
    json: true,
    client: { subscribers: quick ? 500 : 2000, connections: 20, count: quick ? 50 : 500, size: 0, path: '/sub-json' }
  },
  churn: {
    what: `churn: 50 workers open a stream, wait for its headers and reset it (RST_STREAM), for ${quick ? 2 : 5} s; then memory after GC minus before`,
    unit: 'streams/s',
    higherIsBetter: true,
    heartbeat: 0,
    client: { seconds: quick ? 2 : 5, concurrency: 50 }
  }
}
const scenarioNames = value('--only', Object.keys(SCENARIOS).join(',')).split(',')

for (const name of scenarioNames) if (!SCENARIOS[name]) throw new Error(`unknown scenario ${name}`)
for (const name of targetNames) if (!targets[name]) throw new Error(`unknown target ${name}`)

/** A child process that answers request messages ({ id } -> { reply: id }) over IPC. */
function child (script, argv, execArgv = []) {
  const proc = fork(join(__dirname, script), argv, { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  let next = 0
  const pending = new Map()
  const exited = new Promise((resolve) => proc.once('exit', resolve))
  proc.on('message', (message) => {
    if (message.reply !== undefined) {
      pending.get(message.reply)(message)
      pending.delete(message.reply)
    }
  })
  return {
    proc,
    exited,
    request: (message) => new Promise((resolve, reject) => {
      const id = next++
      pending.set(id, resolve)
      proc.send({ ...message, id })
      exited.then(() => reject(new Error(`${script} exited while asked ${message.cmd}`)))
    }),
    next: (predicate) => new Promise((resolve, reject) => {
      const onMessage = (message) => {
        if (!predicate(message)) return
        proc.removeListener('message', onMessage)
        resolve(message)
      }
      proc.on('message', onMessage)
      exited.then((code) => reject(new Error(`${script} exited (${code}) early`)))
    })
  }
}

async function waitForSubscribers (server, expected) {
  let count = 0
  for (let i = 0; i < 100; i++) {
    count = (await server.request({ cmd: 'subscribers' })).subscribers
    if (count === expected) return
    await sleep(50)
  }
  throw new Error(`the server counts ${count} subscribers of ${expected}`)
}

async function measure (scenarioName, targetName, round) {
  const scenario = SCENARIOS[scenarioName]
  // Peers' warnings (an UnsupportedWarning for the Connection header they set over HTTP/2, MaxListeners
  // warnings under fan-out) would flood the terminal: they are listed in bench/README.md instead.
  const execArgv = ['--expose-gc', '--no-warnings']
  if (profile) {
    execArgv.push('--cpu-prof', `--cpu-prof-dir=${PROFILES}`,
      `--cpu-prof-name=${scenarioName}-${targetName.replace(/\W/g, '_')}-${round + 1}.cpuprofile`)
  }
  const server = child('server.js', [targetName, String(scenario.heartbeat)], execArgv)
  let client
  try {
    const ready = await server.next((message) => message.ready !== undefined)
    if (!ready.ready) throw new Error(ready.error)
    const options = {
      scenario: scenarioName === 'heartbeat' ? 'idle' : scenario.runs ?? scenarioName,
      port: ready.port,
      timeoutMs: CELL_TIMEOUT_MS - 10_000,
      ...scenario.client
    }
    client = child('client.js', [JSON.stringify(options)])
    let baseline
    let measured
    let publishMs
    let fail
    const failed = new Promise((resolve, reject) => { fail = reject })
    const reply = (message) => { if (client.proc.connected) client.proc.send(message) }
    client.proc.on('message', (message) => {
      (async () => {
        if (message.subscribed !== undefined) {
          await waitForSubscribers(server, message.subscribed)
          const go = client.next((answer) => answer.go)
          reply({})
          await go
          const published = await server.request({
            cmd: 'publish', count: scenario.client.count, size: scenario.client.size, json: scenario.json === true
          })
          if (published.error) throw new Error(published.error)
          publishMs = published.publishMs
        } else if (message.baseline) {
          baseline = await server.request({ cmd: 'stats' })
          reply({})
        } else if (message.measure && scenarioName === 'heartbeat') {
          // Two asks: the client's comment count before and after the server's CPU window.
          if (measured === undefined) {
            const start = await server.request({ cmd: 'stats' })
            measured = { start, commentsBefore: message.comments }
            await sleep(scenario.seconds * 1000)
            measured.end = await server.request({ cmd: 'stats' })
            reply({})
          } else {
            measured.commentsAfter = message.comments
            reply({ done: true })
          }
        } else if (message.measure) {
          if (scenarioName === 'churn') await sleep(500) // the server lets go of the last streams
          measured = await server.request({ cmd: 'stats' })
          reply({ done: true })
        }
      })().catch(fail)
    })
    let timer
    const timeout = new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no result in ${CELL_TIMEOUT_MS / 1000} s`)), CELL_TIMEOUT_MS)
    })
    const done = await Promise.race([
      client.next((message) => message.result !== undefined || message.error !== undefined),
      timeout,
      failed
    ]).finally(() => clearTimeout(timer))
    if (done.error) throw new Error(done.error)
    const result = done.result
    if (['pull', 'fanout'].includes(scenario.runs ?? scenarioName)) {
      if (result.events !== result.expected || result.disorder > 0) {
        throw new Error(`${result.events} of ${result.expected} events arrived, ${result.disorder} out of order`)
      }
      const figures = { value: result.perSecond, clientCpu: result.clientCpu, seconds: result.seconds }
      if (scenario.client.subscribers === undefined) return figures
      // CPU time, which the machine's noise moves less than the time taken: the server's from its publish to the
      // last delivery, the client's from go to its last event, in ns per delivery.
      const { cpuMicros } = await server.request({ cmd: 'cpu since publish' })
      figures.serverCpuNs = cpuMicros * 1000 / result.events
      figures.clientCpuNs = result.clientCpu * result.seconds * 1e9 / result.events
      figures.publishMs = publishMs
      return figures
    }
    if (scenarioName === 'idle') {
      return { value: (measured.rss - baseline.rss) / result.streams, heap: (measured.heapUsed - baseline.heapUsed) / result.streams }
    }
    if (scenarioName === 'heartbeat') {
      const rounds = scenario.seconds * 1000 / scenario.heartbeat
      const perStreamPerSecond = (measured.commentsAfter - measured.commentsBefore) / result.streams / scenario.seconds
      return {
        value: (measured.end.cpuMicros - measured.start.cpuMicros) / 1000 / rounds,
        heartbeatsPerStreamPerSecond: perStreamPerSecond
      }
    }
    return {
      value: result.perSecond,
      clientCpu: result.clientCpu,
      heapAfter: measured.heapUsed - baseline.heapUsed,
      rssAfter: measured.rss - baseline.rss
    }
  } finally {
    client?.proc.kill()
    if (profile && server.proc.connected) {
      server.proc.send({ cmd: 'exit' })
      await Promise.race([server.exited, sleep(5000)])
    }
    server.proc.kill()
    await server.exited
  }
}

function median (values) {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/** The client's parser alone, no network: how many events a second it could count. */
async function parserAlone () {
  const parser = child('client.js', ['parse'])
  try {
    return (await parser.next((message) => message.result !== undefined)).result.perSecond
  } finally {
    parser.proc.kill()
  }
}

// The JSON scenarios compare serializers: JSON.stringify (raw, fastify-floor, fastify-sse-h2) and an event schema
// (fastify-sse-h2+schema, which runs only them).
const JSON_TARGETS = ['raw', 'raw-batch', 'fastify-floor', 'fastify-sse-h2', 'fastify-sse-h2+schema']

function skipped (scenarioName, targetName) {
  // raw-batch differs from raw only in a fan-out, where it is the limit (one Buffer a subscriber).
  if (targetName === 'raw-batch') return !(SCENARIOS[scenarioName].runs ?? scenarioName).startsWith('fanout')
  if (scenarioName.endsWith('-json')) return !JSON_TARGETS.includes(targetName)
  if (targetName === 'fastify-sse-h2+schema') return true
  // fastify-sse-v2 has no heartbeat of its own.
  return targetName === 'fastify-sse-v2' && scenarioName === 'heartbeat'
}

async function main () {
  const started = Date.now()
  const parser = await parserAlone()
  process.stderr.write(`client parser alone: ${Math.round(parser).toLocaleString('en-US')} events/s\n`)
  const results = {}
  for (const scenarioName of scenarioNames) {
    results[scenarioName] = {}
    for (const targetName of targetNames) {
      if (!skipped(scenarioName, targetName)) results[scenarioName][targetName] = { samples: [], extra: [], errors: [] }
    }
    for (let round = 0; round < runs; round++) {
      // Interleaved: each round measures every target once, starting one further along the list each
      // round, so that the machine's noise (and any warm-up of the OS) spreads over all of them.
      const order = targetNames.map((_, i) => targetNames[(i + round) % targetNames.length])
      for (const targetName of order) {
        if (skipped(scenarioName, targetName)) continue
        const cell = results[scenarioName][targetName]
        const cellStart = Date.now()
        const label = `${scenarioName} ${targetName} round ${round + 1}/${runs}`
        try {
          const { value: sample, ...extra } = await measure(scenarioName, targetName, round)
          cell.samples.push(sample)
          cell.extra.push(extra)
          process.stderr.write(`${label}: ${sample.toFixed(1)} ${SCENARIOS[scenarioName].unit} (${((Date.now() - cellStart) / 1000).toFixed(1)} s)\n`)
        } catch (error) {
          const reason = String(error.message).split('\n')[0]
          cell.errors.push(reason)
          process.stderr.write(`${label}: FAILED ${reason}\n`)
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
  const minutes = (Date.now() - started) / 60_000
  writeResults({ results, scenarios: SCENARIOS, runs, quick, targets: targetNames, parser, minutes, out: value('--out', undefined) })
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})

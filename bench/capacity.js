'use strict'

// `npm run bench:capacity`: how many idle event streams one instance holds on this machine, with heartbeats on, and
// what they cost it. The server (bench/targets.js: fastify-sse-h2 streams of one channel, or the raw node:http2 loop)
// runs in a process of its own, its `ulimit -n` raised to the hard limit; the streams come from client processes of
// their own. It reports:
//   - the streams open, and the time to open them all;
//   - memory per stream: RSS and heap after GC, with the streams open, minus before;
//   - CPU per heartbeat the clients received, over several rounds of idle streams, and per round (one to each stream);
//   - CPU per event fanned out to all of them (events published one at a time, each once the last is in);
//   - event-loop delay p99 (perf_hooks.monitorEventLoopDelay) while idle with heartbeats, and during the fan-out;
//   - the time for app.close() (raw: closing every stream) to end them all, as the clients see it.
//   --targets a,b     fastify-sse-h2, raw (default: both, one after the other)
//   --protocol P      h2c (default) or http1 (a connection per stream: as many as file descriptors allow)
//   --streams N       default 100,000 over h2c; over HTTP/1.1, as many as `ulimit -n` allows the server
//   --connections N   h2c connections (default 1,000)
//   --heartbeat MS    heartbeat interval (default 5,000); CPU is measured over --rounds rounds (default 3)
//   --events N        events fanned out to all (default 5)
//   --clients N       client processes (default 4)
//   --max-old-space-size MB   given to the server's node
//   --quick           10,000 streams over 100 connections (HTTP/1.1: 2,000), a heartbeat each second

const { spawn, fork, execFileSync } = require('node:child_process')
const { once } = require('node:events')
const { setTimeout: sleep } = require('node:timers/promises')
const { monitorEventLoopDelay } = require('node:perf_hooks')

const args = process.argv.slice(2)
const value = (name, fallback) => {
  const i = args.indexOf(name)
  return i === -1 ? fallback : args[i + 1]
}
const OPEN_TIMEOUT_MS = 300_000
// How long an event may take to reach every stream, and the streams to end once closed, before the run says so.
const PHASE_TIMEOUT_MS = 120_000
// Streams a client process asks for at once, at most, while it opens them.
const WAVE = 250
const phase = (what) => process.stderr.write(`  ${what}\n`)

/** The hard limit on open files, which any process may raise its own soft limit to. */
function hardFileLimit () {
  return Number(execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim()) || 1024
}

/** A child that answers request messages ({ cmd } -> its answer) in turn, over IPC. */
function ipc (proc) {
  const exited = new Promise((resolve) => proc.once('exit', resolve))
  let queue = Promise.resolve()
  return {
    proc,
    exited,
    ask: (message) => {
      const answer = queue.then(() => new Promise((resolve, reject) => {
        proc.once('message', resolve)
        proc.send(message)
        exited.then(() => reject(new Error(`a child exited while asked ${message.cmd}`)))
      }))
      queue = answer.catch(() => {})
      return answer
    }
  }
}

// ---- the server's process ----

async function server ([target, protocol, heartbeat]) {
  const { targets } = require('./targets')
  // app.close() of 100,000 streams may take longer than Fastify's pluginTimeout (10 s): the time it takes is a figure.
  const started = await targets[target]({ heartbeatInterval: Number(heartbeat), http1: protocol === 'http1', pluginTimeout: 300_000 })
  let delay
  process.on('message', async (message) => {
    let answer = {}
    if (message.cmd === 'stats') {
      global.gc()
      global.gc()
      const { rss, heapUsed } = process.memoryUsage()
      answer = { rss, heapUsed, subscribers: started.subscribers() }
    } else if (message.cmd === 'cpu') {
      const { user, system } = process.cpuUsage()
      answer = { cpuMicros: user + system }
    } else if (message.cmd === 'delay') {
      // From now until asked again: how late the event loop ran timers (ms).
      if (delay !== undefined) {
        delay.disable()
        answer = { p99: delay.percentile(99) / 1e6, max: delay.max / 1e6 }
      }
      delay = monitorEventLoopDelay({ resolution: 5 })
      delay.enable()
    } else if (message.cmd === 'publish') {
      await started.publish(1, 64, false, message.first)
    } else if (message.cmd === 'close') {
      const began = process.hrtime.bigint()
      await started.close()
      answer = { ms: Number(process.hrtime.bigint() - began) / 1e6 }
    }
    process.send(answer)
  })
  process.send({ port: started.port })
}

// ---- a client's process ----

async function client ([port, protocol, connections, streams]) {
  const { Counter } = require('./client')
  const counters = []
  let opened = 0
  let closed = 0
  let failure
  const origin = `http://127.0.0.1:${port}`
  // Streams are asked for a wave at a time (as many clients coming back do), not all at once: tens of thousands of
  // connections opened in one go overflow the server's accept queue, and some are reset.
  let asked = 0
  let answered = 0
  const openAll = () => {
    const openOne = protocol === 'h2c' ? openH2c() : openHttp1()
    const more = () => {
      while (asked < Number(streams) && asked - answered < WAVE) openOne(asked++)
    }
    answer = () => {
      answered++
      more()
    }
    more()
  }
  let answer = () => {}
  const watch = (stream, counter) => {
    stream.setEncoding('utf8')
    stream.on('data', (chunk) => counter.feed(chunk))
    stream.on('error', (error) => { failure ??= error.code ?? error.message })
    stream.on('close', () => closed++)
  }
  const openH2c = () => {
    const http2 = require('node:http2')
    const sessions = Array.from({ length: Number(connections) }, () => {
      const session = http2.connect(origin)
      session.on('error', (error) => { failure ??= error.code ?? error.message })
      return session
    })
    return (i) => {
      const counter = new Counter(() => {})
      const stream = sessions[i % sessions.length].request({ ':path': '/sub', accept: 'text/event-stream' })
      let responded = false
      stream.once('response', () => {
        responded = true
        opened++
        answer()
      })
      stream.once('close', () => { if (!responded) answer() })
      watch(stream, counter)
      counters.push(counter)
    }
  }
  const openHttp1 = () => {
    const http = require('node:http')
    return () => {
      const counter = new Counter(() => {})
      counters.push(counter)
      const request = http.get({ host: '127.0.0.1', port: Number(port), path: '/sub', agent: false, headers: { accept: 'text/event-stream' } })
      request.on('error', (error) => {
        failure ??= error.code ?? error.message
        answer()
      })
      request.once('response', (response) => {
        opened++
        answer()
        watch(response, counter)
      })
    }
  }
  process.on('message', (message) => {
    if (message.cmd === 'open') openAll()
    let events = 0
    let comments = 0
    let disorder = 0
    for (const counter of counters) {
      events += counter.events
      comments += counter.comments
      disorder += counter.disorder
    }
    process.send({ opened, closed, events, comments, disorder, failure })
  })
  process.send({ ready: true })
}

// ---- the runner ----

async function measure (target, options) {
  const { protocol, streams, connections, heartbeat, rounds, events, clients } = options
  const execArgv = ['--expose-gc', '--no-warnings']
  if (options.maxOldSpace !== undefined) execArgv.push(`--max-old-space-size=${options.maxOldSpace}`)
  // The soft limit on open files raised to the hard one: over HTTP/1.1 every stream is a socket of the server's.
  const proc = spawn('sh', ['-c', 'ulimit -n "$(ulimit -Hn)" && exec "$0" "$@"', process.execPath, ...execArgv, __filename,
    'server', target, protocol, String(heartbeat)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const serverProc = ipc(proc)
  const figures = { target, protocol }
  const children = []
  try {
    const [{ port }] = await once(proc, 'message')
    const before = await serverProc.ask({ cmd: 'stats' })
    for (let c = 0; c < clients; c++) {
      const share = Math.floor(streams / clients) + (c < streams % clients ? 1 : 0)
      const shareOfConnections = Math.max(1, Math.round(connections / clients))
      const child = ipc(fork(__filename, ['client', String(port), protocol, String(shareOfConnections), String(share)], {
        execArgv: ['--max-old-space-size=4096'], stdio: ['ignore', 'inherit', 'inherit', 'ipc']
      }))
      await once(child.proc, 'message')
      children.push(child)
    }
    const began = process.hrtime.bigint()
    for (const child of children) await child.ask({ cmd: 'open' })
    const count = async () => {
      const counts = await Promise.all(children.map((child) => child.ask({})))
      const sum = (key) => counts.reduce((total, each) => total + each[key], 0)
      return { opened: sum('opened'), closed: sum('closed'), events: sum('events'), comments: sum('comments'), disorder: sum('disorder'), failure: counts.find((each) => each.failure)?.failure }
    }
    // Open: every client has its streams' headers, and the server counts them.
    let now = await count()
    while (now.opened < streams && Number(process.hrtime.bigint() - began) / 1e6 < OPEN_TIMEOUT_MS) {
      await sleep(200)
      now = await count()
    }
    figures.openMs = Number(process.hrtime.bigint() - began) / 1e6
    figures.streams = now.opened
    if (now.opened < streams) figures.failure = `${now.opened} of ${streams} opened in ${OPEN_TIMEOUT_MS / 1000} s (${now.failure ?? 'no error'})`
    if (now.opened === 0) return figures
    const open = await serverProc.ask({ cmd: 'stats' })
    figures.rssPerStream = (open.rss - before.rss) / now.opened
    figures.heapPerStream = (open.heapUsed - before.heapUsed) / now.opened

    // Idle, heartbeats on: CPU and event-loop delay over whole rounds.
    phase('idle, heartbeats on')
    await serverProc.ask({ cmd: 'delay' })
    const idleStart = { cpu: (await serverProc.ask({ cmd: 'cpu' })).cpuMicros, comments: (await count()).comments }
    await sleep(rounds * heartbeat)
    const idleEnd = { cpu: (await serverProc.ask({ cmd: 'cpu' })).cpuMicros, comments: (await count()).comments }
    const idleDelay = await serverProc.ask({ cmd: 'delay' })
    // Per heartbeat the clients received: streams whose heartbeats go out together (all of them, after the storm of
    // opening) get 3 or 4 of them in a window of 3 rounds, as the window's ends fall.
    const received = idleEnd.comments - idleStart.comments
    figures.heartbeatCpuPerStreamUs = (idleEnd.cpu - idleStart.cpu) / received
    figures.heartbeatCpuMs = figures.heartbeatCpuPerStreamUs * now.opened / 1000
    figures.heartbeatsPerStreamPerRound = received / now.opened / rounds
    figures.idleDelayP99 = idleDelay.p99
    figures.idleDelayMax = idleDelay.max

    // Fan-out: one event at a time to every stream, each once the last is in.
    phase('fan-out')
    let fanoutCpu = 0
    let fanoutMs = 0
    for (let i = 0; i < events; i++) {
      const cpu = (await serverProc.ask({ cmd: 'cpu' })).cpuMicros
      const sent = process.hrtime.bigint()
      await serverProc.ask({ cmd: 'publish', first: i })
      const since = () => Number(process.hrtime.bigint() - sent) / 1e6
      do now = await count()
      while (now.events < now.opened * (i + 1) && since() < PHASE_TIMEOUT_MS && !(await sleep(5)))
      if (now.events < now.opened * (i + 1)) {
        figures.failure = `event ${i + 1}: ${now.opened * (i + 1) - now.events} deliveries missing after ${PHASE_TIMEOUT_MS / 1000} s`
        return figures
      }
      fanoutMs += since()
      fanoutCpu += (await serverProc.ask({ cmd: 'cpu' })).cpuMicros - cpu
    }
    const fanoutDelay = await serverProc.ask({ cmd: 'delay' })
    if (now.disorder > 0) figures.failure = `${now.disorder} events out of order`
    figures.eventCpuMs = fanoutCpu / 1000 / events
    figures.eventCpuPerStreamUs = figures.eventCpuMs * 1000 / now.opened
    figures.eventMs = fanoutMs / events
    figures.fanoutDelayP99 = fanoutDelay.p99

    // Close: until every client has seen each of its streams end.
    phase('close')
    const closing = process.hrtime.bigint()
    const closed = await serverProc.ask({ cmd: 'close' })
    do now = await count()
    while (now.closed < now.opened && Number(process.hrtime.bigint() - closing) / 1e6 < PHASE_TIMEOUT_MS && !(await sleep(20)))
    figures.closeMs = Number(process.hrtime.bigint() - closing) / 1e6
    figures.appCloseMs = closed.ms
    if (now.closed < now.opened) figures.failure = `${now.opened - now.closed} streams still open after close`
    return figures
  } finally {
    for (const child of children) child.proc.kill()
    proc.kill()
    await serverProc.exited
  }
}

function format (value, digits = 0) {
  if (value === undefined || Number.isNaN(value)) return 'n/a'
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

async function main () {
  const quick = args.includes('--quick')
  const protocol = value('--protocol', 'h2c')
  if (!['h2c', 'http1'].includes(protocol)) throw new Error(`unknown protocol ${protocol}: h2c or http1`)
  const fileLimit = hardFileLimit()
  // Over HTTP/1.1 each stream is a socket of the server's: room for the few files a process has open besides.
  const fitting = fileLimit - 200
  const streams = Number(value('--streams', protocol === 'h2c' ? (quick ? 10_000 : 100_000) : Math.min(fitting, quick ? 2000 : 100_000)))
  const options = {
    protocol,
    streams,
    connections: protocol === 'h2c' ? Number(value('--connections', quick ? 100 : 1000)) : streams,
    heartbeat: Number(value('--heartbeat', quick ? 1000 : 5000)),
    rounds: Number(value('--rounds', 3)),
    events: Number(value('--events', 5)),
    // Over HTTP/1.1 each client's sockets count against its own limit too.
    clients: Number(value('--clients', protocol === 'http1' ? Math.max(4, Math.ceil(streams / (fileLimit - 200))) : 4)),
    maxOldSpace: value('--max-old-space-size', undefined)
  }
  const results = []
  for (const target of value('--targets', 'fastify-sse-h2,raw').split(',')) {
    process.stderr.write(`${target} over ${protocol}: ${streams.toLocaleString('en-US')} streams...\n`)
    results.push(await measure(target, options))
    report(results, options, fileLimit)
  }
}

function report (results, options, fileLimit) {
  const { protocol, streams } = options
  console.log(`\n${streams.toLocaleString('en-US')} idle streams over ${protocol === 'h2c' ? `h2c, ${options.connections.toLocaleString('en-US')} connections` : 'HTTP/1.1, a connection each'}; ` +
    `a heartbeat every ${options.heartbeat} ms (CPU over ${options.rounds} rounds); ${options.events} events fanned out to all, one at a time; ` +
    `open files: ${fileLimit.toLocaleString('en-US')} a process (hard limit)\n`)
  const rows = [
    ['streams open', (f) => format(f.streams)],
    ['time to open them all', (f) => `${format(f.openMs / 1000, 1)} s`],
    ['memory per stream (RSS)', (f) => `${format(f.rssPerStream)} B`],
    ['memory per stream (heap)', (f) => `${format(f.heapPerStream)} B`],
    ['CPU per heartbeat round (one to every stream)', (f) => `${format(f.heartbeatCpuMs, 1)} ms`],
    ['CPU per heartbeat, per stream', (f) => `${format(f.heartbeatCpuPerStreamUs, 2)} µs`],
    ['heartbeats per stream per round, in the window', (f) => format(f.heartbeatsPerStreamPerRound, 2)],
    ['event-loop delay p99, idle (max)', (f) => `${format(f.idleDelayP99, 1)} ms (${format(f.idleDelayMax, 1)} ms)`],
    ['CPU per event fanned out to all', (f) => `${format(f.eventCpuMs, 1)} ms`],
    ['CPU per event, per stream', (f) => `${format(f.eventCpuPerStreamUs, 2)} µs`],
    ['time for an event to reach all', (f) => `${format(f.eventMs, 1)} ms`],
    ['event-loop delay p99, fan-out', (f) => `${format(f.fanoutDelayP99, 1)} ms`],
    ['time to close them all (app.close())', (f) => `${format(f.closeMs / 1000, 2)} s (${format(f.appCloseMs / 1000, 2)} s)`]
  ]
  console.log(`| | ${results.map((f) => f.target).join(' | ')} |`)
  console.log(`| --- | ${results.map(() => '---').join(' | ')} |`)
  for (const [label, cell] of rows) console.log(`| ${label} | ${results.map((f) => f.streams === undefined ? 'n/a' : cell(f)).join(' | ')} |`)
  for (const f of results) if (f.failure !== undefined) console.log(`\n${f.target}: ${f.failure}`)
}

if (args[0] === 'server') {
  server(args.slice(1)).catch((error) => {
    console.error(error)
    process.exit(1)
  })
} else if (args[0] === 'client') {
  client(args.slice(1)).catch((error) => {
    console.error(error)
    process.exit(1)
  })
} else {
  main().catch((error) => {
    console.error(error)
    process.exit(1)
  })
}

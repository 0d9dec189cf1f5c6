'use strict'

// A target server in a process of its own, driven by the bench runner over IPC, so that its memory and CPU
// are measured alone. Run with --expose-gc.

const { targets } = require('./targets')

const [name, heartbeatArg] = process.argv.slice(2)

function stats () {
  global.gc()
  global.gc()
  const { rss, heapUsed } = process.memoryUsage()
  const { user, system } = process.cpuUsage()
  return { rss, heapUsed, cpuMicros: user + system }
}

let publishedAt

async function main () {
  const server = await targets[name]({ heartbeatInterval: Number(heartbeatArg) })
  process.on('message', async (message) => {
    try {
      if (message.cmd === 'stats') process.send({ reply: message.id, ...stats() })
      else if (message.cmd === 'subscribers') process.send({ reply: message.id, subscribers: server.subscribers() })
      else if (message.cmd === 'publish') {
        publishedAt = process.cpuUsage()
        const started = process.hrtime.bigint()
        await server.publish(message.count, message.size, message.json)
        // How long the publishing took the server, every write included: the client can only start after.
        process.send({ reply: message.id, publishMs: Number(process.hrtime.bigint() - started) / 1e6 })
      } else if (message.cmd === 'cpu since publish') {
        // No GC here, unlike stats: the CPU the fan-out took, from its publish to now (its last delivery).
        const { user, system } = process.cpuUsage(publishedAt)
        process.send({ reply: message.id, cpuMicros: user + system })
      } else if (message.cmd === 'exit') {
        // A clean exit, so that --cpu-prof writes its profile; the runner kills the process if this hangs.
        await Promise.race([server.close(), new Promise((resolve) => setTimeout(resolve, 2000))])
        process.exit(0)
      }
    } catch (error) {
      process.send({ reply: message.id, error: String(error && error.stack) })
    }
  })
  process.send({ ready: true, port: server.port })
}

main().catch((error) => {
  process.send({ ready: false, error: String(error && error.stack) })
  process.exit(1)
})

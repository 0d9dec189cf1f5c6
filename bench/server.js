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

async function main () {
  const server = await targets[name]({ heartbeatInterval: Number(heartbeatArg) })
  process.on('message', async (message) => {
    try {
      if (message.cmd === 'stats') process.send({ reply: message.id, ...stats() })
      else if (message.cmd === 'subscribers') process.send({ reply: message.id, subscribers: server.subscribers() })
      else if (message.cmd === 'publish') {
        await server.publish(message.count, message.size, message.json)
        process.send({ reply: message.id })
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

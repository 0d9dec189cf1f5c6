'use strict'

// A redis-server of the benchmark's own, on a free port, without persistence (bench:redis, bench:steering).
const { spawn } = require('node:child_process')
const { createServer } = require('node:net')
const { once } = require('node:events')

async function freePort () {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address()
  server.close()
  return port
}

/** Starts redis-server and resolves once it accepts connections; exits the benchmark, saying what to install, without it. */
async function startRedis () {
  const port = await freePort()
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', 'pipe', 'inherit'] })
  redis.on('error', (error) => {
    console.error(`this benchmark needs redis-server (apt-get install redis-server): ${error.message}`)
    process.exit(1)
  })
  let output = ''
  for await (const chunk of redis.stdout) {
    output += chunk
    if (output.includes('Ready to accept connections')) break
  }
  redis.stdout.resume()
  return { port, url: `redis://127.0.0.1:${port}`, stop: () => redis.kill() }
}

module.exports = { startRedis }

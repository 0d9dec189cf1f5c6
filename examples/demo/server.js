'use strict'

// `npm run demo`: the demo on https://localhost:8443 (HTTP/2) and http://localhost:8080 (HTTP/1.1).
// PORT, HTTP1_PORT and HOST change where it listens.
const { startDemo } = require('./demo')

// What a person can get wrong when starting the demo: said in one line, with no stack trace.
function fail (message) {
  console.error(message)
  process.exit(1)
}

function portFrom (name, fallback) {
  const value = process.env[name]
  if (value === undefined || value === '') return fallback
  const port = Number(value)
  if (!/^\d+$/.test(value.trim()) || port > 65535) {
    fail(`${name} must be a port number (0 to 65535), not ${JSON.stringify(value)}: e.g. ${name}=${fallback + 1000} npm run demo`)
  }
  return port
}

async function main () {
  const port = portFrom('PORT', 8443)
  const http1Port = portFrom('HTTP1_PORT', 8080)
  const demo = await startDemo({
    port,
    http1Port,
    host: process.env.HOST || 'localhost',
    logger: { level: process.env.LOG_LEVEL || 'warn' }
  })
  console.log(`
fastify-sse-h2 demo

  HTTP/2    ${demo.http2.url}
  HTTP/1.1  ${demo.http1.url}   (the same page: see how many streams open)
  One stream ${demo.http1.url}one   (every ticker and the chat on one EventSource, over HTTP/1.1 too)

The HTTPS server uses a self-signed certificate made just now, so the browser warns that the
connection is not private. Accept it for this page: in Chrome or Edge, "Advanced" then "Proceed to
localhost (unsafe)"; in Firefox, "Advanced..." then "Accept the Risk and Continue"; in Safari,
"Show Details" then "visit this website".

Ctrl+C stops the demo.
`)
  const stop = () => {
    demo.close().then(() => process.exit(0), (error) => {
      console.error(error)
      process.exit(1)
    })
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

main().catch((error) => {
  if (error.code === 'EADDRINUSE') {
    fail(`${error.message}: another program uses that port. Choose others, e.g. PORT=9443 HTTP1_PORT=9080 npm run demo`)
  } else if (error.code === 'EACCES') {
    fail(`${error.message}: ports below 1024 need more rights. Choose others, e.g. PORT=9443 HTTP1_PORT=9080 npm run demo`)
  } else if (error.code === 'ENOTFOUND' || error.code === 'EADDRNOTAVAIL') {
    fail(`${error.message}: HOST must be a name or an address of this machine, e.g. HOST=localhost npm run demo`)
  }
  console.error(error)
  process.exit(1)
})

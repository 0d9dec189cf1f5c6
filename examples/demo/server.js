'use strict'

// `npm run demo`: the demo on https://localhost:8443 (HTTP/2) and http://localhost:8080 (HTTP/1.1).
// PORT, HTTP1_PORT and HOST change where it listens.
const { startDemo } = require('./demo')

function portFrom (name, fallback) {
  const value = process.env[name]
  if (value === undefined || value === '') return fallback
  const port = Number(value)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`${name} must be a port number (0 to 65535), not ${JSON.stringify(value)}`)
  }
  return port
}

async function main () {
  const demo = await startDemo({
    port: portFrom('PORT', 8443),
    http1Port: portFrom('HTTP1_PORT', 8080),
    host: process.env.HOST || 'localhost',
    logger: { level: process.env.LOG_LEVEL || 'warn' }
  })
  console.log(`
fastify-sse-h2 demo

  HTTP/2    ${demo.http2.url}
  HTTP/1.1  ${demo.http1.url}   (the same page: see how many streams open)

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
    console.error(`${error.message}: another program uses that port. Choose others, e.g. PORT=9443 HTTP1_PORT=9080 npm run demo`)
  } else {
    console.error(error)
  }
  process.exit(1)
})

'use strict'

const { readFile } = require('node:fs/promises')
const { join } = require('node:path')
const Fastify = require('fastify')
const { generate } = require('selfsigned')
const sse = require('../..')
const { createTickers } = require('./tickers')

const PUBLIC = join(__dirname, 'public')
const RETRY_MS = 1000
const ASSETS = {
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
  '/page.js': { file: 'page.js', type: 'text/javascript; charset=utf-8' }
}

/**
 * Starts the demo: the same page and routes on two servers, HTTP/2 over TLS (`allowHTTP1` too) and plain
 * HTTP/1.1, to compare. Port 0 picks a free port. Resolves to both apps and URLs, and `close()`.
 */
async function startDemo ({ port = 8443, http1Port = 8080, host = 'localhost', certificate, logger = false } = {}) {
  const { key, cert } = certificate ?? await selfSignedCertificate()
  const shared = {
    tickers: createTickers(),
    // One store for both servers: a chat message posted on either reaches the pages of both, as it would
    // across instances sharing a Redis store.
    store: new sse.MemoryStore({ historySize: 100 }),
    urls: { http2: '', http1: '' }
  }
  const http2 = await buildApp({ http2: true, https: { key, cert, allowHTTP1: true }, logger }, shared)
  const http1 = await buildApp({ logger }, shared)
  // The tickers' channels, for the page of one stream: published once, through the shared store to both servers.
  const stopPublishing = shared.tickers.publish((symbol) => http2.sse.channel(tickerChannel(symbol)))
  const close = async () => {
    stopPublishing()
    await Promise.all([http2.close(), http1.close()])
  }
  try {
    await http2.listen({ port, host })
    await http1.listen({ port: http1Port, host })
  } catch (error) {
    await close()
    throw error
  }
  shared.urls.http2 = urlOf(http2, 'https', host)
  shared.urls.http1 = urlOf(http1, 'http', host)
  return { http2: { app: http2, url: shared.urls.http2 }, http1: { app: http1, url: shared.urls.http1 }, close }
}

async function buildApp (options, { tickers, store, urls }) {
  const app = Fastify(options)
  await app.register(sse, { retry: RETRY_MS, store })

  // The page of twelve streams, and the page of one stream for the same tickers and the chat.
  for (const [path, file] of [['/', 'index.html'], ['/one', 'one.html']]) {
    app.get(path, (request, reply) => sendPage(request, reply, file))
  }

  async function sendPage (request, reply, file) {
    const page = await readFile(join(PUBLIC, file), 'utf8')
    const values = {
      httpVersion: request.raw.httpVersion,
      protocol: request.raw.httpVersion === '2.0' ? 'HTTP/2' : 'HTTP/1.1',
      symbols: tickers.symbols.join(' '),
      retry: String(RETRY_MS),
      http2Url: urls.http2,
      http1Url: urls.http1
    }
    return reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache')
      .send(page.replace(/{{(\w+)}}/g, (match, name) => escapeHtml(values[name])))
  }

  for (const [path, { file, type }] of Object.entries(ASSETS)) {
    app.get(path, async (request, reply) => {
      return reply.type(type).header('cache-control', 'no-cache').send(await readFile(join(PUBLIC, file), 'utf8'))
    })
  }

  // This server's open ticker and feed streams, for POST /drop.
  const openStreams = new Set()
  const keep = (stream) => {
    openStreams.add(stream)
    stream.signal.addEventListener('abort', () => openStreams.delete(stream), { once: true })
    return stream
  }

  app.get('/ticker/:symbol', (request, reply) => {
    const { symbol } = request.params
    if (!tickers.has(symbol)) return reply.code(404).send({ error: `No ticker ${symbol}` })
    return keep(reply.sse(tickers.source(symbol)))
  })

  // Every ticker and the chat on one stream. Its ids are a cursor of every channel's position: a reconnect with
  // Last-Event-ID resumes each of them after the last event of it the page saw.
  app.get('/feed', (request, reply) => keep(reply.sse([
    ...tickers.symbols.map((symbol) => app.sse.channel(tickerChannel(symbol))),
    app.sse.channel('chat')
  ])))

  // Closes every ticker stream and feed from the server side: the browsers reconnect after `retry` ms with
  // Last-Event-ID, and each ticker resumes after the last event its page saw.
  app.post('/drop', async () => {
    const dropped = openStreams.size
    for (const stream of openStreams) stream.close()
    return { dropped }
  })

  app.get('/chat', (request, reply) => reply.sse(app.sse.channel('chat')))

  app.post('/chat', {
    schema: {
      body: {
        type: 'object',
        required: ['text'],
        additionalProperties: false,
        properties: { text: { type: 'string', minLength: 1, maxLength: 280 } }
      }
    }
  }, async (request) => {
    const id = await app.sse.channel('chat').publish({ event: 'chat', data: { text: request.body.text, time: Date.now() } })
    return { id }
  })

  return app
}

async function selfSignedCertificate () {
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keySize: 2048,
    algorithm: 'sha256',
    extensions: [{
      name: 'subjectAltName',
      altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }, { type: 7, ip: '::1' }]
    }]
  })
  return { key: pems.private, cert: pems.cert }
}

function tickerChannel (symbol) {
  return `ticker:${symbol}`
}

function urlOf (app, scheme, host) {
  const { port } = app.server.address()
  let name = host === '0.0.0.0' || host === '::' ? 'localhost' : host
  if (name.includes(':')) name = `[${name}]`
  return `${scheme}://${name}:${port}/`
}

function escapeHtml (value) {
  return String(value).replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`)
}

module.exports = { startDemo }

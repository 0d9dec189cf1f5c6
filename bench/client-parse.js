'use strict'

// The client's parsing against the `eventsource` package's (eventsource-parser inside), side by side in one run, in
// Node.js: each reads the same stream, fed by a fetch() of its own from memory (no network: the parse, the decoding
// and the events handed to a listener are what is measured), and counts its `message` events. Then the client's size
// in a browser: its ES module bundled and minified by esbuild, then gzipped.
//
//   npm run bench:client            (builds first)
//   EVENTS=200000 ROUNDS=7 node bench/client-parse.js

const { gzipSync } = require('node:zlib')
const { EventSource } = require('eventsource')
const { EventStreamClient } = require('../dist/lib/client/index.js')

const EVENTS = Number(process.env.EVENTS ?? 100_000)
const ROUNDS = Number(process.env.ROUNDS ?? 5)
const CHUNK = 16 * 1024

// Events as the plugin writes them: an id, a type for some, JSON data of about 100 bytes, a heartbeat now and then.
function makeStream () {
  let text = 'retry: 3000\n\n'
  for (let i = 1; i <= EVENTS; i++) {
    if (i % 1000 === 0) text += ':\n\n'
    text += `id: ${i}\ndata: {"symbol":"ACME","price":${(100 + i / 1000).toFixed(3)},"volume":${i * 7},"at":"2026-12-07T10:00:00.000Z"}\n\n`
  }
  const bytes = Buffer.from(text)
  const chunks = []
  for (let at = 0; at < bytes.length; at += CHUNK) chunks.push(new Uint8Array(bytes.subarray(at, at + CHUNK)))
  return { chunks, bytes: bytes.length }
}

function responseOf (chunks) {
  let next = 0
  const body = new ReadableStream({
    pull (controller) {
      if (next < chunks.length) controller.enqueue(chunks[next++])
      else controller.close()
    }
  })
  return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } })
}

async function timeOne (open, chunks) {
  const started = process.hrtime.bigint()
  let count = 0
  await new Promise((resolve) => {
    const client = open(async () => responseOf(chunks), (event) => {
      // What a page does with an event at the least: reads its data.
      if (event.data.length > 0) count++
      if (count === EVENTS) {
        client.close()
        resolve()
      }
    })
  })
  return Number(process.hrtime.bigint() - started) / 1e6
}

const TARGETS = {
  eventsource: (fetch, onMessage) => {
    const source = new EventSource('http://127.0.0.1/feed', { fetch })
    source.onmessage = onMessage
    return source
  },
  'fastify-sse-h2/client': (fetch, onMessage) => {
    const client = new EventStreamClient('http://127.0.0.1/feed', { fetch })
    client.onmessage = onMessage
    return client
  }
}

function median (values) {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

function browserSize () {
  let esbuild
  try {
    esbuild = require('esbuild')
  } catch {
    return 'esbuild is not installed (npm install): size not measured'
  }
  const [bundle] = esbuild.buildSync({
    entryPoints: [require.resolve('../dist/client/index.js')], bundle: true, minify: true, format: 'esm', write: false
  }).outputFiles
  return `${bundle.contents.length} bytes minified, ${gzipSync(bundle.contents).length} bytes gzipped (esbuild, gzip -6)`
}

async function main () {
  const { chunks, bytes } = makeStream()
  console.log(`${EVENTS} events, ${(bytes / 1e6).toFixed(1)} MB in ${chunks.length} chunks of ${CHUNK / 1024} KiB; ${ROUNDS} rounds, alternating; Node.js ${process.version}`)
  const times = Object.fromEntries(Object.keys(TARGETS).map((name) => [name, []]))
  // A warm-up round each, not counted.
  for (const open of Object.values(TARGETS)) await timeOne(open, chunks)
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, open] of Object.entries(TARGETS)) times[name].push(await timeOne(open, chunks))
  }
  const rates = {}
  for (const [name, ms] of Object.entries(times)) {
    rates[name] = EVENTS / (median(ms) / 1000)
    console.log(`${name.padEnd(22)} median ${median(ms).toFixed(1)} ms: ${Math.round(rates[name]).toLocaleString('en')} events/s, ` +
      `${(bytes / 1e6 / (median(ms) / 1000)).toFixed(0)} MB/s (rounds: ${ms.map((m) => m.toFixed(0)).join(', ')} ms)`)
  }
  console.log(`fastify-sse-h2/client / eventsource: ${(rates['fastify-sse-h2/client'] / rates.eventsource).toFixed(2)}x`)
  console.log(`fastify-sse-h2/client in a browser: ${browserSize()}`)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})

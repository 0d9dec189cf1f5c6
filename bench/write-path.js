'use strict'

// Fixed work on the write path, and nothing else, for an instruction count that the machine's load does not move:
//   valgrind --tool=callgrind --callgrind-out-file=/dev/null node bench/write-path.js fanout 1000
// (after `npm run build`; it uses the built parts). No sockets, no Fastify: streams over responses whose client takes
// every write at once, so that what is counted is what the plugin does per write.
//   fanout N: 200 subscribers of one channel, N events published one after the other (one write per subscriber each)
//   pull N:   one stream, N events of 64 bytes sent with send()
// Run it with N and with 0 and subtract: what is left is the work of the N events.

const { Writable } = require('node:stream')
const { EventStream } = require('../dist/lib/channels/event-stream')
const { StreamGroup } = require('../dist/lib/stream/stream-group')
const { Channels } = require('../dist/lib/channels/channels')
const { ChannelSchemas } = require('../dist/lib/channels/channel-schemas')
const { MemoryStore } = require('../dist/lib/stores/memory-store')

const SUBSCRIBERS = 200
const DATA = 'x'.repeat(64)
let taken = 0
const log = { warn () {}, error () {}, info () {}, debug () {}, trace () {}, fatal () {}, child () { return log } }

class TakingResponse extends Writable {
  socket = { destroyed: false, end () {} }
  req = { socket: this.socket }
  statusCode = 200
  writeHead () { return this }
  flushHeaders () {}
  // As a socket does, a string is encoded as it is written.
  _write (chunk, encoding, callback) {
    taken += (typeof chunk === 'string' ? Buffer.from(chunk) : chunk).length
    callback()
  }
}

function open (openStreams, channel) {
  const stream = new EventStream(new TakingResponse({ decodeStrings: false }), log, undefined, JSON.stringify, openStreams)
  stream.open(200, {}, undefined, false)
  if (channel !== undefined) channel.subscribe(stream, undefined, undefined)
  return stream
}

async function fanout (events) {
  const openStreams = new StreamGroup(0, 1024 * 1024, 0)
  const channels = new Channels(new MemoryStore(), JSON.stringify, log, new ChannelSchemas({}, JSON.stringify))
  const channel = channels.channel('news')
  for (let i = 0; i < SUBSCRIBERS; i++) open(openStreams, channel)
  for (let i = 0; i < events; i++) await channel.publish({ data: DATA })
  await new Promise((resolve) => setImmediate(resolve))
  return channel.subscribers
}

async function pull (events) {
  const stream = open(new StreamGroup(0, 1024 * 1024, 0))
  let sent = 0
  for (let i = 0; i < events; i++) {
    if (stream.send({ data: DATA })) sent++
    else await stream.drained()
  }
  await stream.drained()
  return sent
}

const [scenario = 'fanout', n = '1000'] = process.argv.slice(2)
;({ fanout, pull })[scenario](Number(n)).then((result) => console.log(scenario, n, result, `${taken} bytes taken`))

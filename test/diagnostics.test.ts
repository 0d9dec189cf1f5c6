import { test, type Test } from 'tap'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import Fastify from 'fastify'
import { startServer } from './helpers/server'
import { connectSession, openStream } from './helpers/client'
import { signalled, within } from './helpers/wait'
import sse, {
  MemoryStore, type SseStore, type ChannelPublishMessage, type ChannelReplayMessage, type EventStream, type StreamCloseMessage, type StreamDropMessage,
  type StreamOpenMessage, type StreamRefuseMessage
} from '../index'
import { injectSSE } from '../testing'

/** Every message of a diagnostics channel while the test runs. */
function record<Message> (t: Test, name: string): Message[] {
  const messages: Message[] = []
  const onMessage = (message: unknown): void => { messages.push(message as Message) }
  subscribe(name, onMessage)
  t.teardown(() => unsubscribe(name, onMessage))
  return messages
}

test('stream:open in the handler, as reply.sse() opens the stream; stream:close with the reason\'s code', async (t) => {
  const opens = record<StreamOpenMessage>(t, 'fastify-sse-h2:stream:open')
  const closes = record<StreamCloseMessage>(t, 'fastify-sse-h2:stream:close')
  const handles: EventStream[] = []
  let openedBeforeReturn: boolean | undefined
  const server = await startServer(t, 'h2', (app) => {
    app.get('/push/:n', (request, reply) => {
      const stream = reply.sse()
      openedBeforeReturn = opens.some((message) => message.stream === stream)
      handles.push(stream)
    })
  })
  const client = await openStream(t, server, '/push/1')
  t.equal(openedBeforeReturn, true, 'published synchronously, within reply.sse(): in the request\'s async context')
  t.equal(opens.length, 1)
  const [open] = opens
  t.equal(open.stream, handles[0])
  t.equal(open.request.routeOptions.url, '/push/:n', 'the request, for the route\'s name')
  t.equal(open.reply.request, open.request)
  await openStream(t, server, '/push/2', { method: 'HEAD' })
  t.equal(opens.length, 1, 'a HEAD request never opens a stream')
  client.close()
  await within(new Promise((resolve) => handles[0].signal.addEventListener('abort', resolve)), 'the client to leave')
  t.same(closes.map((message) => [message.stream === handles[0], message.code]), [[true, 'FST_SSE_CLIENT_CLOSED']])
  t.equal(closes[0].reason, handles[0].signal.reason, 'the reason its signal aborted with')
  t.ok(closes[0].stream.closed)
})

test('stream:drop for a client dropped as slow, while what waited for it is still there; then stream:close', async (t) => {
  const drops = record<StreamDropMessage>(t, 'fastify-sse-h2:stream:drop')
  const closes = record<StreamCloseMessage>(t, 'fastify-sse-h2:stream:close')
  const waitingAtDrop: number[] = []
  const onDrop = (message: unknown): void => { waitingAtDrop.push((message as StreamDropMessage).stream.bufferedBytes) }
  subscribe('fastify-sse-h2:stream:drop', onDrop)
  t.teardown(() => unsubscribe('fastify-sse-h2:stream:drop', onDrop))
  const handle = signalled<EventStream>()
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/push', (request, reply) => { handle.resolve(reply.sse()) })
  }, { plugin: { maxBufferedBytes: 16 * 1024 }, logLevel: 'error' })
  const slow = await openStream(t, server, '/push', { session: await connectSession(t, server) })
  slow.pause()
  const stream = await within(handle.promise, 'the stream')
  for (let i = 0; i < 10_000 && !stream.closed; i++) {
    stream.send({ data: 'x'.repeat(1000) })
    await new Promise((resolve) => setImmediate(resolve))
  }
  t.same(drops.map((message) => [message.stream === stream, message.code]), [[true, 'FST_SSE_SLOW_CLIENT']])
  t.equal(drops[0].reason, stream.signal.reason)
  t.ok(waitingAtDrop[0] > 16 * 1024, `what waited: ${waitingAtDrop[0]} bytes`)
  t.same(closes.map((message) => message.code), ['FST_SSE_SLOW_CLIENT'])
})

test('stream:refuse with the request and the code; the stream never opens', async (t) => {
  const refusals = record<StreamRefuseMessage>(t, 'fastify-sse-h2:stream:refuse')
  const opens = record<StreamOpenMessage>(t, 'fastify-sse-h2:stream:open')
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sse, { limits: { maxStreams: 1 } })
  app.get('/push', (request, reply) => { reply.sse() })
  const open = await injectSSE(app, { url: '/push' })
  const refused = await injectSSE(app, { url: '/push', headers: { accept: '*/*' } })
  t.equal(refused.status, 503)
  t.equal(opens.length, 1)
  t.equal(refusals.length, 1)
  t.equal(refusals[0].code, 'FST_SSE_TOO_MANY_STREAMS')
  t.equal(refusals[0].request.url, '/push')
  t.equal(refusals[0].reply.request, refusals[0].request)
  t.equal(refusals[0].reason.statusCode, 503)
  await open.close()
})

test('channel:publish once the store took the event, with the channel\'s name, the id and the event given', async (t) => {
  const publishes = record<ChannelPublishMessage>(t, 'fastify-sse-h2:channel:publish')
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sse)
  await app.ready()
  const event = { event: 'news', data: { title: 'Hello' } }
  const id = await app.sse.channel('news').publish(event)
  await app.sse.channel('other').publish({ id: 'mine', data: 'x' })
  t.same(publishes.map(({ channel, id }) => ({ channel, id })), [{ channel: 'news', id }, { channel: 'other', id: 'mine' }])
  t.equal(publishes[0].event, event, 'the event as it was given')
  await t.rejects(app.sse.channel('news').publish({ data: 1n }), { code: 'FST_SSE_SERIALIZER_FAILED' })
  t.equal(publishes.length, 2, 'nothing for a publish that failed')
})

test('channel:replay for each subscriber that came back with a Last-Event-ID: its outcome and the events written', async (t) => {
  const replays = record<ChannelReplayMessage>(t, 'fastify-sse-h2:channel:replay')
  const memory = new MemoryStore({ historySize: 2 })
  const store: SseStore = {
    append: (channel, event) => memory.append(channel, event),
    // A store that is away for one id: the replay fails.
    readAfter: async (channel, lastEventId) => {
      if (lastEventId === 'broken') throw new Error('the store is away')
      return memory.readAfter(channel, lastEventId)
    },
    listen: (channel, listener) => memory.listen(channel, listener),
    unlisten: (channel, listener) => memory.unlisten(channel, listener),
    close: () => memory.close()
  }
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sse, { store })
  app.get('/news', (request, reply) => reply.sse(app.sse.channel('news'), {
    filter: (event) => event.data !== 'skipped'
  }))
  await app.ready()
  const news = app.sse.channel('news')
  const ids = [await news.publish({ data: 'one' }), await news.publish({ data: 'skipped' }), await news.publish({ data: 'three' })]
  const resumed = await injectSSE(app, { url: '/news', lastEventId: ids[0] })
  const missed = await injectSSE(app, { url: '/news', lastEventId: 'never-sent' })
  await injectSSE(app, { url: '/news' })
  t.same(replays.map(({ channel, outcome, events }) => ({ channel, outcome, events })), [
    // ids[0] is past the history of 2: the subscriber gets missed first.
    { channel: 'news', outcome: 'missed', events: 2 },
    { channel: 'news', outcome: 'missed', events: 2 }
  ], 'the filtered event is not counted; a fresh subscriber has no replay')
  t.equal(replays[0].stream.lastEventId, ids[0])
  t.equal(replays[0].error, undefined)
  const kept = await injectSSE(app, { url: '/news', lastEventId: ids[2] })
  t.match(replays[2], { outcome: 'resumed', events: 0 })
  const broken = await injectSSE(app, { url: '/news', lastEventId: 'broken', headers: { accept: '*/*' } })
  t.equal(broken.status, 503, 'a channel stream whose replay failed is refused')
  t.same(await broken.next(), { done: true, value: undefined })
  t.match(replays[3], { outcome: 'failed', events: 0, error: { message: 'the store is away' } })
  await Promise.all([resumed, missed, kept].map(async (stream) => await stream.close()))
})

import Fastify, { type FastifyInstance } from 'fastify'
import { Readable } from 'node:stream'
import { expect, test } from 'tstyche'
import sse, {
  errors, EventStream, fastifySseH2, Channel, MemoryStore, MISSED_EVENT, type ChannelEvent, type FastifySseOptions,
  type Replay, type SseEvent, type SseMessage, type SseSourceContext, type SseStore, type SseEncoding, type SseLimits,
  type SseShutdownRetry, type SseChannelEntry, type SseSubscribeOptions
} from 'fastify-sse-h2'

test('the plugin registers with typed options', () => {
  const app = Fastify()
  expect(app.register(sse)).type.not.toRaiseError()
  expect(app.register(sse, { heartbeatInterval: 15_000, retry: 3000, serializer: JSON.stringify })).type.not.toRaiseError()
  expect(app.register(sse, { lastEventIdQuery: false, maxBufferedBytes: 1024 })).type.not.toRaiseError()
  expect(app.register(sse, { compression: true, limits: { maxStreams: 10_000, maxStreamsPerAddress: 50, retryAfter: 5 } }))
    .type.not.toRaiseError()
  expect(app.register(sse, { compression: ['gzip', 'br'] })).type.not.toRaiseError()
  expect(app.register(sse, { compression: ['deflate'] })).type.toRaiseError()
  expect(app.register(sse, { limits: { maxStreams: '10' } })).type.toRaiseError()
  expect<SseEncoding>().type.toBe<'br' | 'gzip'>()
  expect<SseLimits>().type.toHaveProperty('maxStreamsPerAddress')
  expect(app.register(sse, { shutdownRetry: { min: 1000, max: 10_000 } })).type.not.toRaiseError()
  expect(app.register(sse, { shutdownRetry: { min: 1000 } })).type.toRaiseError()
  expect<SseShutdownRetry>().type.toBe<{ min: number, max: number }>()
  expect(app.register(sse, { heartbeatInterval: '15s' })).type.toRaiseError()
  expect(app.register(sse, { lastEventIdQuery: true })).type.toRaiseError()
  expect(app.register(sse, { serializer: (data: unknown) => 1 })).type.toRaiseError()
  expect(fastifySseH2).type.toBe(sse)
  expect<FastifySseOptions>().type.toHaveProperty('heartbeatInterval')
})

test('reply.sse takes every kind of source and returns the handle', () => {
  const app = Fastify({ http2: true })
  app.get('/', (request, reply) => {
    expect(reply.sse()).type.toBe<EventStream>()
    expect(reply.sse([{ data: 1 }, 'text'])).type.toBe<EventStream>()
    expect(reply.sse((async function * () { yield { id: '1', data: 'x' } })())).type.toBe<EventStream>()
    expect(reply.sse(Readable.from([]))).type.toBe<EventStream>()
    expect(reply.sse(function * ({ signal, lastEventId }) {
      expect(signal).type.toBe<AbortSignal>()
      expect(lastEventId).type.toBe<string | undefined>()
      yield 'x'
    })).type.toBe<EventStream>()
    expect(reply.sse([], { serializer: String, retry: 10, compression: false })).type.toBe<EventStream>()
    expect(reply.sse).type.not.toBeCallableWith([], { compression: 'gzip' })
    expect(reply.sse).type.not.toBeCallableWith(42)
    expect(reply.sse).type.not.toBeCallableWith('a string')
    expect(reply.sse).type.not.toBeCallableWith([], { retry: 'soon' })
  })
})

test('the handle', () => {
  const app: FastifyInstance = Fastify()
  app.get('/', (request, reply) => {
    const stream = reply.sse()
    expect(stream.send({ data: { n: 1 }, id: 1, event: 'tick', retry: 10, comment: 'c' })).type.toBe<boolean>()
    expect(stream.send('text')).type.toBe<boolean>()
    expect(stream.send).type.not.toBeCallableWith({ id: {} })
    expect(stream.send).type.not.toBeCallableWith({ event: 1 })
    expect(stream.comment('c')).type.toBe<boolean>()
    expect(stream.drained()).type.toBe<Promise<void>>()
    expect(stream.close()).type.toBe<void>()
    expect(stream.signal).type.toBe<AbortSignal>()
    expect(stream.lastEventId).type.toBe<string | undefined>()
    expect(stream.closed).type.toBe<boolean>()
    expect(stream.bufferedBytes).type.toBe<number>()
    expect(stream).type.not.toHaveProperty('then')
    expect(stream).type.not.toHaveProperty('flush')
    expect(stream).type.not.toHaveProperty('quietTicks')
  })
})

test('events and errors', () => {
  expect<SseMessage>().type.toBeAssignableFrom('text')
  expect<SseMessage>().type.toBeAssignableFrom({ data: null })
  expect<SseEvent>().type.not.toBeAssignableFrom({ id: true })
  expect<SseSourceContext>().type.toHaveProperty('signal')
  const error = new errors.FST_SSE_INVALID_ID('a line feed')
  expect(error.code).type.toBe<'FST_SSE_INVALID_ID'>()
  expect(error).type.toBeAssignableTo<Error>()
})

test('channels', () => {
  const app = Fastify({ http2: true })
  const news = app.sse.channel('news')
  expect(news).type.toBe<Channel>()
  expect(news.publish({ data: { n: 1 } })).type.toBe<Promise<string>>()
  expect(news.publish('text')).type.toBe<Promise<string>>()
  expect(news.publish).type.not.toBeCallableWith(42)
  expect(news.subscribers).type.toBe<number>()
  expect(news.name).type.toBe<string>()
  expect(news.close()).type.toBe<Promise<void>>()
  expect(app.sse.store).type.toBe<SseStore>()
  app.get('/news', (request, reply) => {
    expect(reply.sse(news)).type.toBe<EventStream>()
    expect(reply.sse(news, {
      filter: (event) => {
        expect(event.id).type.toBe<string>()
        return event.event === 'tick'
      }
    })).type.toBe<EventStream>()
    expect(reply.sse).type.not.toBeCallableWith(news, { filter: (event: ChannelEvent) => 'yes' })
  })
  expect(app.register(sse, { store: new MemoryStore({ historySize: 10 }), writeTimeout: 0 })).type.not.toRaiseError()
  expect(app.register(sse, { historySize: 10, historyMaxAge: 60_000 })).type.not.toRaiseError()
  expect(app.register(sse, { store: {} })).type.toRaiseError()
  const store: SseStore = new MemoryStore()
  expect(store.readAfter('news', '1')).type.toBe<Replay | Promise<Replay>>()
  expect(MISSED_EVENT).type.toBe<'missed'>()
})

test('streams of several channels', () => {
  const app = Fastify({ http2: true })
  const prices = app.sse.channel('prices')
  const alerts = app.sse.channel('alerts')
  app.get('/dashboard', (request, reply) => {
    const stream = reply.sse([prices, { channel: alerts, filter: (event) => event.id !== '' }])
    expect(stream).type.toBe<EventStream>()
    expect(stream.subscribe(app.sse.channel('room:1'))).type.toBe<void>()
    expect(stream.subscribe(app.sse.channel('room:2'), { filter: (event) => event.event === 'chat' })).type.toBe<void>()
    expect(stream.unsubscribe(prices)).type.toBe<void>()
    expect(stream.subscribe).type.not.toBeCallableWith('room:3')
    expect(stream.subscribe).type.not.toBeCallableWith(prices, { filter: 'chat' })
    expect(reply.sse).type.not.toBeCallableWith([{ channel: prices, filter: (event: ChannelEvent) => 'yes' }])
  })
  expect<SseChannelEntry>().type.toBeAssignableFrom(prices)
  expect<SseChannelEntry>().type.toBeAssignableFrom({ channel: prices })
  expect<SseSubscribeOptions>().type.toBeAssignableFrom({ filter: () => true })
})

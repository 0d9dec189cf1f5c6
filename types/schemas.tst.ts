import Fastify from 'fastify'
import swagger from '@fastify/swagger'
import { expect, test } from 'tstyche'
import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts'
import {
  eventStreamItemSchemas, type Channel, type EventStream, type SseChannelOptions, type SseMessage, type SseRouteOptions
} from 'fastify-sse-h2'

const Price = Type.Object({ symbol: Type.String(), price: Type.Number() })
const PriceOrAlert = Type.Union([
  Type.Object({ event: Type.Literal('price'), data: Price }),
  Type.Object({ event: Type.Literal('alert'), data: Type.Object({ text: Type.String() }) })
])

interface PriceData { symbol: string, price: number }

test('with TypeBox, a route\'s event schema types what its streams send', () => {
  const app = Fastify().withTypeProvider<TypeBoxTypeProvider>()
  app.get('/prices', { schema: { response: { 200: { content: { 'text/event-stream': { schema: Price } } } } } }, (request, reply) => {
    const stream = reply.sse()
    expect(stream).type.toBe<EventStream<SseMessage<PriceData>> & void>()
    expect(stream.send({ id: '1', data: { symbol: 'ACME', price: 12.5 } })).type.toBe<boolean>()
    expect(stream.send).type.not.toBeCallableWith({ data: { symbol: 'ACME', price: 'high' } })
    expect(stream.send).type.not.toBeCallableWith({ data: { symbol: 'ACME' } })
    expect(stream.send).type.not.toBeCallableWith('plain text is not a price')
    expect(reply.sse([{ data: { symbol: 'A', price: 1 } }])).type.toBe<EventStream<SseMessage<PriceData>> & void>()
    expect(reply.sse).type.not.toBeCallableWith([{ data: { symbol: 'A', price: '1' } }])
    expect(reply.sse(async function * () { yield { data: { symbol: 'A', price: 1 } } })).type.not.toRaiseError()
    expect(reply.sse).type.not.toBeCallableWith(async function * () { yield { data: { price: 'free' } } })
  })
  expect(app.get('/returned', { schema: { response: { 200: { content: { 'text/event-stream': { schema: Price } } } } } },
    (request, reply) => reply.sse([]))).type.not.toRaiseError()
  expect(app.get('/returned-async', { schema: { response: { 200: { content: { 'text/event-stream': { schema: Price } } } } } },
    async (request, reply) => reply.sse([]))).type.not.toRaiseError()
})

test('with TypeBox, an event map types each event by its type', () => {
  const app = Fastify().withTypeProvider<TypeBoxTypeProvider>()
  app.get('/market', { schema: { response: { 200: { content: { 'text/event-stream': { schema: PriceOrAlert } } } } } }, (request, reply) => {
    const stream = reply.sse()
    expect(stream.send({ event: 'price', data: { symbol: 'A', price: 1 }, id: 7 })).type.toBe<boolean>()
    expect(stream.send({ event: 'alert', data: { text: 'halted' }, retry: 1000 })).type.toBe<boolean>()
    expect(stream.send).type.not.toBeCallableWith({ event: 'price', data: { text: 'halted' } })
    expect(stream.send).type.not.toBeCallableWith({ event: 'trade', data: { symbol: 'A', price: 1 } })
    expect(stream.send).type.not.toBeCallableWith({ data: { symbol: 'A', price: 1 } })
  })
})

test('with TypeBox, a channel\'s schema types what it publishes', () => {
  const app = Fastify().withTypeProvider<TypeBoxTypeProvider>()
  const prices = app.sse.channel('prices', { schema: Price })
  expect(prices).type.toBe<Channel<SseMessage<PriceData>>>()
  expect(prices.publish({ data: { symbol: 'A', price: 1 } })).type.toBe<Promise<string>>()
  expect(prices.publish).type.not.toBeCallableWith({ data: { symbol: 'A', price: '1' } })
  expect(prices.publish).type.not.toBeCallableWith('text')
  const market = app.sse.channel('market', { schema: PriceOrAlert })
  expect(market.publish({ event: 'alert', data: { text: 'x' } })).type.toBe<Promise<string>>()
  expect(market.publish).type.not.toBeCallableWith({ event: 'alert', data: { symbol: 'A', price: 1 } })
  expect(app.sse.channel('untyped')).type.toBe<Channel>()
  app.get('/prices', { schema: { response: { 200: { content: { 'text/event-stream': { schema: Price } } } } } },
    (request, reply) => { reply.sse(prices) })
  expect(app.sse.channel).type.not.toBeCallableWith('x', { schema: 'Price' })
  expect(app.sse.channel).type.not.toBeCallableWith('x', { shema: Price })
})

test('with json-schema-to-ts, the same', () => {
  const app = Fastify().withTypeProvider<JsonSchemaToTsProvider>()
  const Tick = {
    type: 'object',
    properties: { n: { type: 'integer' }, at: { type: 'string' } },
    required: ['n'],
    additionalProperties: false
  } as const
  app.get('/ticks', { schema: { response: { 200: { content: { 'text/event-stream': { schema: Tick } } } } } }, (request, reply) => {
    const stream = reply.sse()
    expect(stream.send({ data: { n: 1, at: 'now' } })).type.toBe<boolean>()
    expect(stream.send).type.not.toBeCallableWith({ data: { at: 'now' } })
    expect(stream.send).type.not.toBeCallableWith({ data: { n: 'one' } })
  })
  const ticks = app.sse.channel('ticks', { schema: Tick })
  expect(ticks.publish({ data: { n: 2 } })).type.toBe<Promise<string>>()
  expect(ticks.publish).type.not.toBeCallableWith({ data: { n: 2, extra: true } })
})

test('without a type provider, a schema types nothing: any message', () => {
  const app = Fastify()
  app.get('/prices', { schema: { response: { 200: { content: { 'text/event-stream': { schema: Price } } } } } }, (request, reply) => {
    expect(reply.sse()).type.toBe<EventStream>()
    expect(reply.sse().send('text')).type.toBe<boolean>()
  })
  expect(app.sse.channel('prices', { schema: Price })).type.toBe<Channel>()
})

test('route options, negotiation and the OpenAPI transform are typed', () => {
  const app = Fastify()
  expect(app.get('/', { config: { sse: { heartbeatInterval: 5000, retry: 1000, compression: ['gzip'], negotiate: true } } },
    (request, reply) => { reply.sse() })).type.not.toRaiseError()
  // A misspelt name is not caught here (Fastify infers the config's type from the route): register refuses it.
  expect(app.get('/', { config: { sse: { writeTimeout: '30s' } } }, (request, reply) => { reply.sse() })).type.toRaiseError()
  app.get('/', (request) => {
    expect(request.wantsEventStream).type.toBe<boolean>()
  })
  expect<SseRouteOptions>().type.toHaveProperty('maxBufferedBytes')
  expect<SseChannelOptions>().type.toHaveProperty('schema')
  expect(eventStreamItemSchemas({ openapiObject: { openapi: '3.2.0' } })).type.toBe<{ openapi: string }>()
  expect(app.register(swagger, { openapi: { openapi: '3.2.0' }, transformObject: eventStreamItemSchemas })).type.not.toRaiseError()
})

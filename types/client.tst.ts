import { expect, test } from 'tstyche'
import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { SseMessageOf } from 'fastify-sse-h2'
import {
  EventStreamClient, type EventsOf, type MissedEvent, type StreamErrorEvent, type StreamEvent
} from 'fastify-sse-h2/client'

const Price = Type.Object({ symbol: Type.String(), price: Type.Number() })
// eslint-disable-next-line @typescript-eslint/no-unused-vars -- the schema a route would declare: read here by its type
const PriceOrAlert = Type.Union([
  Type.Object({ event: Type.Literal('price'), data: Price }),
  Type.Object({ event: Type.Literal('alert'), data: Type.Object({ text: Type.String() }) })
])

interface PriceData { symbol: string, price: number }

test('EventStreamClient<Events> types each event type\'s value; its own events too', () => {
  const feed = new EventStreamClient<{ price: PriceData, message: string }>('/feed')
  feed.addEventListener('price', (event) => {
    expect(event).type.toBe<StreamEvent<PriceData, 'price'>>()
    expect(event.value.price).type.toBe<number>()
    expect(event.data).type.toBe<string>()
  })
  feed.addEventListener('error', (event) => expect(event).type.toBe<StreamErrorEvent>())
  feed.addEventListener('missed', (event) => expect(event).type.toBe<MissedEvent>())
  feed.addEventListener('anything', (event) => expect(event).type.toBe<Event>())
  feed.onmessage = (event) => expect(event).type.toBe<StreamEvent<string, 'message'>>()
  feed.onerror = (event) => expect(event.status).type.toBe<number | undefined>()
  expect<'not a listener'>().type.not.toBeAssignableTo<typeof feed.onopen>()
  expect(feed.readyState).type.toBe<0 | 1 | 2>()
  expect(feed.lastEventId).type.toBe<string>()
  expect(EventStreamClient<{ price: PriceData }>).type.toBeConstructableWith('/feed', { binary: ['price'] })
  expect(EventStreamClient<{ price: PriceData }>).type.not.toBeConstructableWith('/feed', { binary: ['prices'] })
  expect(EventStreamClient<{ price: PriceData }>).type.not.toBeConstructableWith('/feed', { retry: 1000 })
})

test('EventsOf: a route\'s event schema gives the client its events, so a schema change breaks the page\'s compile', () => {
  type Events = EventsOf<SseMessageOf<TypeBoxTypeProvider, typeof PriceOrAlert>>
  expect<Events>().type.toBe<{ price: { symbol: string, price: number }, alert: { text: string } }>()
  const feed = new EventStreamClient<Events>('/feed')
  feed.addEventListener('alert', (event) => expect(event.value.text).type.toBe<string>())
  // Code written against another schema (a price as text) no longer compiles.
  feed.addEventListener('price', (event) => expect(event.value.price).type.not.toBeAssignableTo<string>())
  expect(feed.addEventListener).type.not.toBeCallableWith('price', (event: StreamEvent<{ price: string }, 'price'>) => event)

  type OneType = EventsOf<SseMessageOf<TypeBoxTypeProvider, typeof Price>>
  expect<OneType['message']>().type.toBe<{ symbol: string, price: number }>()
})

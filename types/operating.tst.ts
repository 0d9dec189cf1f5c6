import Fastify from 'fastify'
import { subscribe } from 'node:diagnostics_channel'
import { expect, test } from 'tstyche'
import type {
  EventStream, SseStats, SseCloseCode, SseRefusalCode, StreamOpenMessage, StreamCloseMessage, StreamDropMessage,
  StreamRefuseMessage, ChannelPublishMessage, ChannelReplayMessage
} from 'fastify-sse-h2'

test('app.sse.stats() gives typed counts', () => {
  const app = Fastify({ http2: true })
  const stats = app.sse.stats()
  expect(stats).type.toBe<SseStats>()
  expect(stats.streams.open).type.toBe<number>()
  expect(stats.streams.closed.FST_SSE_SLOW_CLIENT).type.toBe<number>()
  expect(stats.streams.refused.FST_SSE_TOO_MANY_STREAMS).type.toBe<number>()
  expect(stats.streams.byProtocol.http2.opened).type.toBe<number>()
  expect(stats.events.sent + stats.bytes.sent + stats.channels.count + stats.channels.subscribers).type.toBe<number>()
  expect(stats.replays).type.toBe<{ resumed: number, missed: number, failed: number }>()
  expect(stats.streams.closed).type.not.toHaveProperty('FST_SSE_TOO_MANY_STREAMS')
  expect<SseCloseCode>().type.toBe<'FST_SSE_CLIENT_CLOSED' | 'FST_SSE_STREAM_ENDED' | 'FST_SSE_SERVER_CLOSING' |
  'FST_SSE_SLOW_CLIENT' | 'FST_SSE_FROZEN_CLIENT' | 'FST_SSE_EXPIRED' | 'FST_SSE_MAX_AGE'>()
  expect<SseRefusalCode>().type.toBe<'FST_SSE_TOO_MANY_STREAMS' | 'FST_SSE_SERVER_CLOSING' | 'FST_SSE_ALREADY_SENT' |
  'FST_SSE_CHANNEL_UNAVAILABLE'>()
})

test('the messages of the diagnostics channels', () => {
  subscribe('fastify-sse-h2:stream:open', (message) => {
    const { stream, request, reply } = message as StreamOpenMessage
    expect(stream).type.toBe<EventStream>()
    expect(request.routeOptions.url).type.toBe<string | undefined>()
    expect(reply.request).type.toBe(request)
  })
  subscribe('fastify-sse-h2:stream:close', (message) => {
    expect((message as StreamCloseMessage).code).type.toBe<SseCloseCode>()
    expect((message as StreamCloseMessage).reason.code).type.toBe<string>()
  })
  subscribe('fastify-sse-h2:stream:drop', (message) => {
    expect((message as StreamDropMessage).code).type.toBe<'FST_SSE_SLOW_CLIENT' | 'FST_SSE_FROZEN_CLIENT'>()
  })
  subscribe('fastify-sse-h2:stream:refuse', (message) => {
    expect((message as StreamRefuseMessage).code).type.toBe<SseRefusalCode>()
  })
  subscribe('fastify-sse-h2:channel:publish', (message) => {
    expect((message as ChannelPublishMessage).channel).type.toBe<string>()
    expect((message as ChannelPublishMessage).id).type.toBe<string>()
  })
  subscribe('fastify-sse-h2:channel:replay', (message) => {
    expect((message as ChannelReplayMessage).outcome).type.toBe<'resumed' | 'missed' | 'failed'>()
    expect((message as ChannelReplayMessage).events).type.toBe<number>()
  })
})

import type { FastifyError, FastifyReply } from 'fastify'
import { publishChannelReplay, publishStreamClose, publishStreamRefuse } from './diagnostics'
import {
  CLOSE_CODES, REFUSAL_CODES, REPLAY_OUTCOMES, zeroCounts, type SseCloseCode, type SseRefusalCode, type SseReplayOutcome
} from '../core/codes'

/** Open streams of one protocol, and how many opened in all. */
export interface SseProtocolStats {
  open: number
  opened: number
}

/** What `app.sse.stats()` gives: counts since the plugin registered, and what is open now. */
export interface SseStats {
  streams: {
    /** Streams open now: opened, and not yet ended (their `signal` not aborted). */
    open: number
    /** Streams that opened (their headers were sent), in all. */
    opened: number
    /** Streams that ended, by the code of their `signal.reason`. */
    closed: Record<SseCloseCode, number>
    /** Streams refused before they opened, by code. */
    refused: Record<SseRefusalCode, number>
    /** `open` and `opened` by protocol: HTTP/1.1 (each stream holds a connection) and HTTP/2. */
    byProtocol: { http1: SseProtocolStats, http2: SseProtocolStats }
  }
  /** Events written to streams (an event published to 1,000 subscribers counts 1,000), replays included. */
  events: { sent: number }
  /** Bytes of event stream written to streams (before compression), heartbeats and `retry:` lines included. */
  bytes: { sent: number }
  /**
   * Channels open now, and the subscriptions of every channel (a stream subscribed to two channels counts in each; the
   * subscribers of a channel being closed count until their streams end).
   */
  channels: { count: number, subscribers: number }
  /** Replays of subscribers that came back with a `Last-Event-ID`, by outcome. */
  replays: Record<SseReplayOutcome, number>
}

/**
 * The counters of one plugin instance, each kept as it changes, so that reading them costs the same however many
 * streams and channels there are. The write path adds to `eventsSent` and `bytesSent` itself (a field each, no call),
 * channels to `channels` and `subscriptions`; what happens once to a stream is counted by the methods, which also tell
 * the diagnostics channels.
 */
export class Stats {
  eventsSent = 0
  bytesSent = 0
  /** Channels made and not closed. */
  channels = 0
  subscriptions = 0
  private readonly http1 = { open: 0, opened: 0 }
  private readonly http2 = { open: 0, opened: 0 }
  private readonly closed = zeroCounts(CLOSE_CODES)
  private readonly refused = zeroCounts(REFUSAL_CODES)
  private readonly replays = zeroCounts(REPLAY_OUTCOMES)

  streamOpened (http2: boolean): void {
    const protocol = http2 ? this.http2 : this.http1
    protocol.open++
    protocol.opened++
  }

  streamClosed (stream: object, http2: boolean, reason: FastifyError): void {
    (http2 ? this.http2 : this.http1).open--
    this.closed[reason.code as SseCloseCode]++
    publishStreamClose(stream, reason)
  }

  streamRefused (reply: FastifyReply, reason: FastifyError): void {
    this.refused[reason.code as SseRefusalCode]++
    publishStreamRefuse(reply, reason)
  }

  replayed (stream: object, channel: string, outcome: SseReplayOutcome, events: number, error?: unknown): void {
    this.replays[outcome]++
    publishChannelReplay(stream, channel, outcome, events, error)
  }

  /** The counts, as a new plain object. */
  snapshot (): SseStats {
    const { http1, http2 } = this
    return {
      streams: {
        open: http1.open + http2.open,
        opened: http1.opened + http2.opened,
        closed: { ...this.closed },
        refused: { ...this.refused },
        byProtocol: { http1: { ...http1 }, http2: { ...http2 } }
      },
      events: { sent: this.eventsSent },
      bytes: { sent: this.bytesSent },
      channels: { count: this.channels, subscribers: this.subscriptions },
      replays: { ...this.replays }
    }
  }
}

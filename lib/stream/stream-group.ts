import type { Http2Session } from 'node:http2'
import { StreamTransport } from './transport'
import type { StreamLimits } from './stream-limits'
import { Stats } from '../observe/stats'
import type { ClosingConnections } from './closing-connections'
import { DEFAULT_SHUTDOWN_RETRY, drawRetry, type ShutdownRetry } from './shutdown-retry'
import { Heartbeat } from './heartbeat'
import { FST_SSE_SERVER_CLOSING } from '../core/errors'
import { Lifetimes } from './lifetimes'
import { StreamsBySession } from './streams-by-session'

/**
 * Streams of one plugin instance with the same timing, whose connection is open: what their heartbeat and shutdown
 * walk.
 */
export class StreamGroup {
  readonly heartbeatInterval: number
  readonly maxBufferedBytes: number
  readonly writeTimeout: number
  readonly limits: StreamLimits | undefined
  /** The plugin instance's counters, which its streams add to. */
  readonly stats: Stats
  private readonly streams = new StreamsBySession<StreamTransport>()
  // Connections of streams dropped (slow or frozen clients) that have not closed yet: shutdown lets go of them too,
  // though no stream of theirs is open any more (a frozen HTTP/2 client never answers its GOAWAY).
  private readonly lingering = new Set<Http2Session | StreamTransport>()
  private readonly heartbeat: Heartbeat | undefined
  /** The deadlines of its streams (maxStreamAge, expiresAt), checked at each heartbeat tick. */
  readonly lifetimes: Lifetimes
  /** True once closeAll() began: a stream that would open after it is refused. */
  closing = false

  // Counters of their own unless given the plugin instance's (a test of the delivery core builds the parts alone).
  constructor (heartbeatInterval: number, maxBufferedBytes: number, writeTimeout: number, stats = new Stats(),
    limits?: StreamLimits, maxStreamAge = 0, lifetimeRetry = DEFAULT_SHUTDOWN_RETRY) {
    this.heartbeatInterval = heartbeatInterval
    this.maxBufferedBytes = maxBufferedBytes
    this.writeTimeout = writeTimeout
    this.stats = stats
    this.limits = limits
    const beats = heartbeatInterval > 0 || writeTimeout > 0
    this.lifetimes = new Lifetimes(maxStreamAge, lifetimeRetry, !beats)
    this.heartbeat = beats ? new Heartbeat(heartbeatInterval, writeTimeout, this.streams, this.lifetimes) : undefined
  }

  /** How many streams are open. */
  get size (): number {
    return this.streams.size
  }

  add (stream: StreamTransport): void {
    this.streams.add(stream, stream.session)
    this.lifetimes.opened(stream)
    if (this.streams.size === 1) this.heartbeat?.start()
  }

  /**
   * The stream was dropped: it counts no more, though its connection (the HTTP/2 session it was on, if it still was)
   * may not have closed yet.
   */
  letGo (stream: StreamTransport): void {
    if (!this.remove(stream)) return
    const session = stream.session
    // HTTP/1.1: until its socket's close, which destroy() brings.
    if (session === undefined) {
      this.lingering.add(stream)
    } else if (!session.destroyed && !this.lingering.has(session)) {
      this.lingering.add(session)
      session.once('close', () => this.lingering.delete(session))
    }
  }

  /** Its connection closed. */
  delete (stream: StreamTransport): void {
    this.lingering.delete(stream)
    this.remove(stream)
  }

  private remove (stream: StreamTransport): boolean {
    if (!this.streams.delete(stream, stream.session)) return false
    this.lifetimes.remove(stream)
    this.limits?.release(stream)
    if (this.streams.size === 0) this.heartbeat?.stop()
    return true
  }

  /**
   * Ends every stream, each told to reconnect after a delay drawn from `retry`, and lets go of their connections:
   * from now on, no stream opens.
   */
  closeAll (connections: ClosingConnections, retry: ShutdownRetry): void {
    this.closing = true
    // One reason for all: an error's stack costs microseconds to take, 100,000 streams most of a second.
    const reason = new FST_SSE_SERVER_CLOSING()
    for (const stream of this.streams) {
      connections.add(stream.response)
      stream.shutdown(drawRetry(retry), reason)
    }
    for (const connection of this.lingering) {
      if (connection instanceof StreamTransport) connections.add(connection.response)
      else connections.addHttp2Session(connection)
    }
  }
}

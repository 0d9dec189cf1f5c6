import { constants as http2Constants } from 'node:http2'
import type { Http2Session, ServerHttp2Stream } from 'node:http2'
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { FastifyBaseLogger, FastifyError } from 'fastify'
import type { SseMessage, SseSerializer } from '../core/events'
import type { Stats } from '../observe/stats'
import type { StreamGroup } from './stream-group'
import type { SseEncoding } from './compression'
import { isGone, watchClose, writeHeaders, type RawResponse } from './response'
import { StreamWrites, type Phase } from './stream-writes'
import { HEARTBEAT_FRAME, frameComment, frameEvent, frameRetry } from '../protocol/framing'
import { publishStreamDrop } from '../observe/diagnostics'
import { FST_SSE_CLIENT_CLOSED, FST_SSE_FROZEN_CLIENT, FST_SSE_STREAM_ENDED } from '../core/errors'

// One Buffer written to every stream it is due: no encoding, no copy.
const HEARTBEAT_BYTES = Buffer.from(HEARTBEAT_FRAME)

/**
 * One open event stream's transport: its life (open, close, end, drop), what it sends, and the heartbeat's look at
 * it. Its bytes, and the one rule for a client that is behind, are StreamWrites'. It knows nothing of channels: the
 * stream that carries them (EventStream) builds on it through the hooks it must define.
 */
export abstract class StreamTransport<Message extends SseMessage = SseMessage> extends StreamWrites {
  /** The id the client last received (`Last-Event-ID` header, or the query fallback), or `undefined`. */
  readonly lastEventId: string | undefined
  // Why it ends (or ended): set when a close is asked for, or when it ends otherwise.
  private reason: Error | undefined
  // Made on first use of `signal`: a channel subscriber that never asks costs no controller.
  private controller: AbortController | undefined
  private readonly log: FastifyBaseLogger
  private readonly serializer: SseSerializer
  /** @internal What the heartbeat last saw the client take, and since when (the heartbeat's ms), or 0. */
  private takenAtCheck = 0
  /** @internal */
  private stalledSince = 0
  /** @internal The HTTP/2 session it is on (a stream reset no longer says), or undefined over HTTP/1.1. */
  session: Http2Session | undefined

  /** @internal */
  constructor (res: RawResponse, log: FastifyBaseLogger, lastEventId: string | undefined, serializer: SseSerializer,
    group: StreamGroup) {
    super(res, group)
    this.lastEventId = lastEventId
    this.log = log
    this.serializer = serializer
  }

  /** @internal The plugin instance's counters. */
  get stats (): Stats {
    return this.group.stats
  }

  /** Aborted when the stream ends, for any reason: `signal.reason` says which (an error with a `code`). */
  get signal (): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController()
      if (this.phase === 'ended') this.controller.abort(this.reason)
    }
    return this.controller.signal
  }

  /** True once the stream is closed, or closing: nothing more can be sent. */
  get closed (): boolean {
    return this.reason !== undefined
  }

  /** @internal True once nothing more will be written, replays included. */
  get hasEnded (): boolean {
    return this.phase === 'ended'
  }

  /**
   * Sends one event, after every channel event already published to this stream. Returns `false` when the
   * client is behind (wait for `drained()` before sending more) or the stream is closed. An invalid event
   * throws and nothing is written.
   */
  send (message: Message): boolean {
    if (this.closed) return false
    return this.queue(frameEvent(message, this.serializer), true, true, 1)
  }

  /** Sends a comment line, which clients ignore. Returns like `send()`. */
  comment (text: string): boolean {
    if (this.closed) return false
    return this.queue(frameComment(text), true, true, 0)
  }

  /**
   * Ends the stream after every event already sent or published to it; the client's EventSource reconnects
   * unless told otherwise.
   */
  close (): void {
    this.end(new FST_SSE_STREAM_ENDED())
  }

  /** @internal Writes the headers (and `retry:`), or ends at once for HEAD or a client already gone. */
  open (statusCode: number, headers: OutgoingHttpHeaders, retry: number | undefined, headOnly: boolean,
    encoding?: SseEncoding): void {
    if (isGone(this.res)) {
      this.abandon(new FST_SSE_CLIENT_CLOSED())
      return
    }
    watchClose(this.res, () => this.onTransportClose())
    this.session = writeHeaders(this.res, statusCode, headers)
    if (headOnly) {
      this.end(new FST_SSE_STREAM_ENDED())
      return
    }
    this.phase = 'open'
    if (encoding !== undefined) this.compress(encoding)
    this.group.add(this)
    this.stats.streamOpened(this.http2)
    if (retry !== undefined) this.queue(frameRetry(retry), false, false, 0)
    else if (this.pending !== '') this.flush()
    else if (!this.http2) setImmediate(sayOpen, this)
  }

  /**
   * @internal Its first bytes go with its headers: a proxy that terminates HTTP/2 (nginx) sends the client nothing,
   * headers included, until the first byte of the body, and the page's `open` would wait for the first heartbeat. A
   * stream that has written nothing by the turn after it opened writes a comment. Not over HTTP/2: such a proxy talks
   * HTTP/1.1 to the server, the client has the headers at once, and a first write costs an HTTP/2 stream about 1 KB of
   * memory for as long as it lives (Node's, measured on node:http2 alone).
   */
  sayOpen (): void {
    if (this.written === 0 && this.phase === 'open') this.queue(HEARTBEAT_FRAME, false, false, 0)
  }

  /** @internal The stream will never open: aborts its signal so that a source already made lets go. */
  abandon (reason: Error): void {
    this.disconnected()
    this.finish(reason)
  }

  /** @internal Sends an event from a pulled source: the source is paused instead of being bounded. */
  sendPulled (message: unknown): boolean {
    return this.queue(frameEvent(message as SseMessage, this.serializer), false, false, 1)
  }

  /**
   * @internal Writes `events` events given by another (a channel) at once, behind what is pending, even while the
   * client is behind: a chunk shared by every subscriber costs a reference per subscriber, not a copy.
   */
  writeShared (chunk: string | Buffer, events: number): void {
    if (!this.admit(chunk.length, true)) return
    this.stats.eventsSent += events
    // What the stream's own send() queued while the client was behind goes first.
    if (this.pending !== '') {
      this.writeOut(this.pending)
      this.pending = ''
    }
    this.writeOut(chunk)
  }

  /** @internal Writes what a subscriber missed (`events` events), which the history bounds, ahead of what it sends next. */
  writeReplay (text: string, events: number): void {
    if (text !== '') this.queue(text, true, false, events)
  }

  /** @internal What was owed to the stream is written: a close that waited for it goes ahead. */
  settled (): void {
    if (this.reason !== undefined) this.end(this.reason)
  }

  /**
   * @internal The heartbeat's look at the stream, at `now` (ms), `ticks` ticks after its last: a comment once it has
   * been quiet for `ticksPerBeat` ticks; dropped once its client has taken nothing of what waits for `writeTimeout` ms.
   */
  tick (now: number, ticks: number, ticksPerBeat: number, writeTimeout: number): void {
    if (this.bufferedBytes === 0) {
      this.stalledSince = 0
      // A comment may go ahead of frames still pending: clients ignore it wherever it falls between frames. A stream
      // closed by the server stays here until its connection lets go (writeTimeout still applies): admit() refuses.
      this.quietTicks += ticks
      if (this.quietTicks >= ticksPerBeat && this.admit(HEARTBEAT_BYTES.length, false)) this.writeOut(HEARTBEAT_BYTES)
      return
    }
    // Bytes wait for the client (a closed stream's last ones too): it gets no heartbeat, which would only pile up
    // behind them, and is dropped once it has taken nothing of them for writeTimeout.
    const taken = this.takenBytes
    if (this.stalledSince === 0 || taken !== this.takenAtCheck) {
      this.takenAtCheck = taken
      this.stalledSince = now
    } else if (now - this.stalledSince >= writeTimeout) {
      const waitedMs = now - this.stalledSince
      this.drop(new FST_SSE_FROZEN_CLIENT(waitedMs), { waitedMs, writeTimeout },
        'a client took nothing for longer than writeTimeout')
    }
  }

  /** @internal The response the stream is written to, whose connection shutdown lets go. */
  get response (): RawResponse {
    return this.res
  }

  /**
   * @internal Ends the stream because the server is closing, after a `retry:` of `retry` ms: its client
   * reconnects after that delay (to another instance), which shutdown draws at random for each stream.
   */
  shutdown (retry: number, reason: Error): void {
    this.retire(retry, reason)
  }

  /**
   * @internal Ends the stream for `reason` (its lifetime, a tag's close()) after a `retry:` of `retry` ms, so that its
   * client comes back after that delay: after every event already sent or published to it, as close().
   */
  retire (retry: number, reason: Error): void {
    if (this.phase !== 'ended') this.pending += frameRetry(retry)
    this.end(reason)
  }

  /** @internal Drops the stream at once, with whatever was waiting for the client. */
  destroy (reason: Error): void {
    if (this.connected) {
      if (this.http2) (this.target as ServerHttp2Stream).close(http2Constants.NGHTTP2_CANCEL)
      else (this.res as ServerResponse).destroy()
    }
    // Its slot is free now: over HTTP/2 the stream closes only once its RST_STREAM is sent, which waits behind
    // what the frozen client's connection holds, maybe for good.
    this.group.letGo(this)
    if (this.phase !== 'ended') {
      this.pending = ''
      this.finish(reason)
    }
  }

  /** Before the stream's own write, and before it ends: what others (channels) owe it this tick goes first. */
  protected abstract catchUp (): void

  /** Whether the stream must wait before it ends: events still owed to it are on their way (`settled()` then). */
  protected abstract holdsEnd (): boolean

  /** The stream has ended: what builds on it lets go. */
  protected abstract released (): void

  /** Queues a frame of `events` events (0: a comment, a `retry:`); `own`: the stream's own, after what it is owed. */
  private queue (frame: string, bounded: boolean, own: boolean, events: number): boolean {
    if (own) this.catchUp()
    if (!this.admit(frame.length, bounded)) return false
    this.stats.eventsSent += events
    this.enqueue(frame)
    return !this.needsDrain
  }

  /** Drops a client that is behind (slow) or takes nothing (frozen): a warning, the diagnostics, and its end. */
  protected drop (reason: FastifyError, details: object, message: string): void {
    this.log.warn(details, 'fastify-sse-h2: ' + message + '; its stream was closed')
    publishStreamDrop(this, reason)
    this.destroy(reason)
  }

  private end (reason: Error): void {
    if (this.phase === 'ended') return
    this.reason ??= reason
    // What was published before the close goes out before the end; a replay still being read, once it is in.
    this.catchUp()
    // Catching up may have ended it: a client behind by more than it may be is dropped.
    if ((this.phase as Phase) === 'ended' || this.holdsEnd()) return
    if (this.connected) this.endResponse()
    this.pending = ''
    this.finish(this.reason)
  }

  private finish (reason: Error): void {
    const wasOpen = this.phase === 'open'
    // A stream that never opened lets go of its limits slot now; an open one once its connection does.
    if (!wasOpen) this.group.limits?.release(this)
    this.phase = 'ended'
    this.reason = reason
    this.controller?.abort(reason)
    this.releaseDrainWait()
    this.released()
    if (wasOpen) this.stats.streamClosed(this, this.http2, reason as FastifyError)
  }

  private onTransportClose (): void {
    this.disconnected()
    this.group.delete(this)
    if (this.phase !== 'ended') {
      this.pending = ''
      this.finish(new FST_SSE_CLIENT_CLOSED())
    }
  }
}

function sayOpen (stream: StreamTransport): void {
  stream.sayOpen()
}

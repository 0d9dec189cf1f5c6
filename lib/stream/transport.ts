import { constants as http2Constants } from 'node:http2'
import type { Http2ServerResponse, Http2Session, ServerHttp2Stream } from 'node:http2'
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Writable } from 'node:stream'
import type { FastifyBaseLogger, FastifyError } from 'fastify'
import type { SseMessage, SseSerializer, SseSubscribeOptions } from '../fastify/types'
import type { OpenStreams } from './stream-group'
import type { Subscription } from '../channels/subscription'
import type { Stats } from '../observe/stats'
import type { Channel, ChannelFilter } from '../channels/channel'
import { MAX_CURSOR_CHANNELS, StreamCursor, refuseOwnId } from '../channels/cursor'
import { checkChannel, subscriptionEntry } from '../channels/channel-list'
import { createCompressor, FLUSH, type Compressor, type SseEncoding } from './compression'
import { HEARTBEAT_FRAME, frameComment, frameEvent, frameRetry } from '../protocol/framing'
import { publishStreamDrop } from '../observe/diagnostics'
import {
  FST_SSE_CLIENT_CLOSED, FST_SSE_FROZEN_CLIENT, FST_SSE_SLOW_CLIENT, FST_SSE_STREAM_ENDED, FST_SSE_SERVER_CLOSING,
  FST_SSE_CHANNEL_CLOSED, FST_SSE_TOO_MANY_CHANNELS
} from '../core/errors'

export type RawResponse = ServerResponse | Http2ServerResponse

// Frames produced without yielding to the event loop are written together, up to this many characters.
const FLUSH_AT = 16 * 1024
// One Buffer written to every stream it is due: no encoding, no copy.
const HEARTBEAT_BYTES = Buffer.from(HEARTBEAT_FRAME)

// Turns of the event loop, counted while streams write. Bytes written in this turn or the one before may not have had
// a chance to reach the client yet: Node hands them to the socket from an immediate (HTTP/2), whose place among the
// app's own immediates varies. Whether a client is behind is judged by what it was given before that.
let turn = 0
let turnsToCount = 0

function endTurn (): void {
  turn++
  if (--turnsToCount > 0) setImmediate(endTurn)
}

interface DrainWait {
  promise: Promise<void>
  resolve: () => void
}

/**
 * One open event stream: the handle `reply.sse()` returns. It owns the stream's state (what waits to be
 * written, whether the client is behind, whether it is closed) and writes to the HTTP/2 stream itself,
 * or to the HTTP/1.1 response. Every write goes through `admit()`, the one rule for a client that is behind.
 */
export class EventStream<Message extends SseMessage = SseMessage> {
  /** The id the client last received (`Last-Event-ID` header, or the query fallback), or `undefined`. */
  readonly lastEventId: string | undefined

  /** @internal The channels it is subscribed to. */
  readonly subscriptions: Subscription[] = []
  /** @internal Set once it carries several channels (or resumes by a cursor): the ids of its events are then this cursor. */
  cursor: StreamCursor | undefined
  /** @internal Throws for a channel the stream's route may not stream (its event schema would not apply). */
  checkChannel: ((channel: Channel) => void) | undefined
  /** @internal Heartbeat ticks since the last write. */
  quietTicks = 0
  /** @internal False once the response is finished or the connection gone. */
  transportOpen = true
  /** @internal What the heartbeat last saw the client take (`takenBytes`), and since when (ms), or 0. */
  takenAtCheck = 0
  stalledSince = 0
  /** @internal The client's address, when streams are limited per address. */
  address = ''
  /** @internal The plugin instance's counters. */
  readonly stats: Stats

  // Made on first use of `signal`: a channel subscriber that never asks costs no controller.
  private controller: AbortController | undefined
  private closeReason: Error | undefined
  // Set by close() while a replay is still being read: the stream ends once it is written.
  private endReason: Error | undefined
  private readonly res: RawResponse
  // The HTTP/2 stream itself, so writes skip the compatibility layer; the response for HTTP/1.1.
  private readonly target: ServerHttp2Stream | ServerResponse
  // Where frames are written: the target, or a compressor piped into it.
  private sink: Writable
  private compressor: Compressor | undefined
  private http2Session: Http2Session | undefined
  private flushKind = 0
  private readonly http2: boolean
  private readonly log: FastifyBaseLogger
  private readonly serializer: SseSerializer
  private readonly openStreams: OpenStreams
  private pending = ''
  private flushScheduled = false
  private needsDrain = false
  private drainListened = false
  private ended = false
  // Until the headers are written (a channel stream waits for its store to say where it starts), frames wait.
  private opened = false
  // Counted as opened: its end is counted too.
  private counted = false
  private drainWait: DrainWait | undefined
  // Bytes handed to the sink, in all.
  private written = 0
  // Characters admitted during the turn `turnOfWrites`, and during the one before it.
  private writtenThisTurn = 0
  private writtenLastTurn = 0
  private turnOfWrites = -1
  // The largest single write over maxBufferedBytes still on its way (an event, a replay): the client is not
  // behind for taking its time over it.
  private allowance = 0

  /** @internal */
  constructor (res: RawResponse, log: FastifyBaseLogger, lastEventId: string | undefined,
    serializer: SseSerializer, openStreams: OpenStreams) {
    this.lastEventId = lastEventId
    this.res = res
    this.http2 = 'stream' in res
    this.target = 'stream' in res ? res.stream : res
    this.sink = this.target
    this.log = log
    this.serializer = serializer
    this.openStreams = openStreams
    this.stats = openStreams.stats
  }

  /** Aborted when the stream ends, for any reason: `signal.reason` says which (an error with a `code`). */
  get signal (): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController()
      if (this.closeReason !== undefined) this.controller.abort(this.closeReason)
    }
    return this.controller.signal
  }

  /** True once the stream is closed, or closing: nothing more can be sent. */
  get closed (): boolean {
    return this.ended || this.endReason !== undefined
  }

  /** Bytes not yet taken by the client: frames not yet written, and written ones it has not read. */
  get bufferedBytes (): number {
    if (!this.transportOpen) return 0
    const compressor = this.compressor
    return this.pending.length + this.sink.writableLength +
      (compressor === undefined ? 0 : compressor.readableLength + this.target.writableLength)
  }

  /** @internal How much of what was written the transport (or compressor) has taken: grows while the client reads. */
  get takenBytes (): number {
    return this.written - this.sink.writableLength
  }

  /** @internal True once nothing more will be written, replays included. */
  get hasEnded (): boolean {
    return this.ended
  }

  /**
   * Sends one event, after every channel event already published to this stream. Returns `false` when the
   * client is behind (wait for `drained()` before sending more) or the stream is closed. An invalid event
   * throws and nothing is written.
   */
  send (message: Message): boolean {
    if (this.closed) return false
    if (this.cursor !== undefined) refuseOwnId(message)
    return this.queue(frameEvent(message, this.serializer), true, true, 1)
  }

  /** Sends a comment line, which clients ignore. Returns like `send()`. */
  comment (text: string): boolean {
    if (this.closed) return false
    return this.queue(frameComment(text), true, true, 0)
  }

  /** Resolves when what was sent has been handed to the client, or the stream closed. Never rejects. */
  drained (): Promise<void> {
    if (!this.needsDrain || this.ended) return Promise.resolve()
    if (this.drainWait === undefined) {
      let release!: () => void
      const promise = new Promise<void>((resolve) => { release = resolve })
      this.drainWait = { promise, resolve: release }
    }
    return this.drainWait.promise
  }

  /**
   * Subscribes the open stream to one more channel: its events arrive from now on, or, when the client came back with
   * a cursor that holds the channel, from after its position there. The stream then carries several channels, and
   * the id of every event is its cursor. Subscribed already: the filter is replaced. Closed: nothing happens.
   */
  subscribe (channel: Channel<never>, options?: SseSubscribeOptions): void {
    const { channel: checked, filter } = subscriptionEntry(channel, options)
    this.join(checked, filter, true)
  }

  /**
   * Unsubscribes the stream from a channel, after the events of it this instance already holds; the stream stays
   * open. Not subscribed: nothing happens.
   */
  unsubscribe (channel: Channel<never>): void {
    const checked = checkChannel(channel, 'stream.unsubscribe()')
    const index = this.subscriptions.findIndex((subscription) => subscription.channel === checked)
    if (index === -1) return
    const subscription = this.subscriptions[index]
    checked.catchUp(subscription)
    this.subscriptions.splice(index, 1)
    subscription.cancel()
    checked.unsubscribe(subscription)
    // A close that waited for its replay goes ahead.
    this.settled()
  }

  /**
   * @internal Subscribes to a channel, resumed by the stream's last event id. `several`: the stream carries several
   * channels (a list, or subscribe()), and writes its cursor as the id of its events. `answer`: as Channel's
   * subscribe() (at once when there is nothing to subscribe).
   */
  join (channel: Channel, filter: ChannelFilter | undefined, several: boolean, answer?: (error?: unknown) => void): void {
    const subscribed = this.subscriptions.find((subscription) => subscription.channel === channel)
    if (this.closed || subscribed !== undefined) {
      if (subscribed !== undefined) subscribed.filter = filter
      answer?.()
      return
    }
    if (channel.closed) throw new FST_SSE_CHANNEL_CLOSED(channel.name)
    if (this.subscriptions.length === MAX_CURSOR_CHANNELS) {
      throw new FST_SSE_TOO_MANY_CHANNELS(MAX_CURSOR_CHANNELS, MAX_CURSOR_CHANNELS + 1)
    }
    this.checkChannel?.(channel)
    if (this.cursor === undefined) {
      const cursor = new StreamCursor(this.lastEventId)
      // A client that comes back with a cursor is given cursors again, on a stream of one channel too.
      if (several || cursor.resumes) {
        this.cursor = cursor
        for (const subscription of this.subscriptions) cursor.add(subscription, this.subscriptions)
      }
    }
    const cursor = this.cursor
    channel.subscribe(this, filter, cursor !== undefined
      ? cursor.resumeOf(channel.name)
      : this.lastEventId === undefined ? undefined : { id: this.lastEventId }, answer)
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
    const res = this.res
    if (this.transportGone()) {
      this.abandon(new FST_SSE_CLIENT_CLOSED())
      return
    }
    // Listeners cost memory on every idle stream: 'close' is the one every stream needs (on, not once: once
    // allocates a bound wrapper), 'drain' is added when a write first waits, and only HTTP/1.1 can emit 'error'.
    this.res.on('close', () => this.onTransportClose())
    if (!this.http2) {
      this.res.on('error', onResponseError)
      if ((this.res as ServerResponse).socket === null) this.watchQueued(this.res as ServerResponse)
    }
    // The client's `open` event must fire before the first event, however long that takes: the headers go now.
    if (this.http2) {
      // Straight to the stream: the compatibility layer would keep a second copy of them for the stream's life.
      res.statusCode = statusCode
      ;(this.target as ServerHttp2Stream).respond({ ...headers, ':status': statusCode })
      this.http2Session = (this.target as ServerHttp2Stream).session
    } else {
      res.writeHead(statusCode, headers)
      ;(res as ServerResponse).flushHeaders()
    }
    this.opened = true
    if (headOnly) {
      this.end(new FST_SSE_STREAM_ENDED())
      return
    }
    if (encoding !== undefined) {
      const compressor = createCompressor(encoding)
      compressor.on('error', onCompressorError)
      compressor.pipe(this.target)
      this.compressor = compressor
      this.flushKind = FLUSH[encoding]
      this.sink = compressor
    }
    this.openStreams.add(this)
    this.counted = true
    this.stats.streamOpened(this.http2)
    if (retry !== undefined) this.queue(frameRetry(retry), false, false, 0)
    else if (this.pending !== '') this.flush()
  }

  /** @internal The stream will never open: aborts its signal so that a source already made lets go. */
  abandon (reason: Error): void {
    this.ended = true
    this.transportOpen = false
    this.finish(reason)
  }

  /** @internal Sends an event from a pulled source: the source is paused instead of being bounded. */
  sendPulled (message: unknown): boolean {
    if (this.cursor !== undefined) refuseOwnId(message)
    return this.queue(frameEvent(message as SseMessage, this.serializer), false, false, 1)
  }

  /** @internal Logs what made a source fail, unless it is the stream's own end, then closes. */
  fail (error: unknown): void {
    if (this.closed) {
      this.log.debug({ err: error }, 'fastify-sse-h2: the event source ended with an error after the stream closed')
    } else {
      this.log.error({ err: error }, 'fastify-sse-h2: the event source failed; the stream was closed')
    }
    this.close()
  }

  /** @internal Writes what is pending, unless the client is behind. */
  flush (): void {
    this.flushScheduled = false
    if (this.needsDrain || this.pending === '' || this.ended || !this.opened) return
    const chunk = this.pending
    this.pending = ''
    this.writeOut(chunk)
  }

  /**
   * @internal Writes `events` events of a channel at once, behind what is pending, even while the client is behind: a
   * chunk shared by every subscriber costs a reference per subscriber, not a copy.
   */
  writeChannel (chunk: string | Buffer, events: number): void {
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

  /** @internal A replay was written (or failed), or a channel caught up: a close that waited for it goes ahead. */
  settled (): void {
    if (this.endReason !== undefined) this.end(this.endReason)
  }

  /** @internal Called by the heartbeat when the client took nothing of what waits for longer than writeTimeout. */
  dropFrozenClient (waitedMs: number): void {
    this.log.warn({ waitedMs, writeTimeout: this.openStreams.writeTimeout },
      'fastify-sse-h2: a client took nothing for longer than writeTimeout; its stream was closed')
    const reason = new FST_SSE_FROZEN_CLIENT(waitedMs)
    publishStreamDrop(this, reason)
    this.destroy(reason)
  }

  /** @internal Called by the heartbeat when the stream has been quiet long enough. */
  heartbeat (): void {
    // A comment may go ahead of frames still pending: clients ignore it wherever it falls between frames.
    if (this.admit(HEARTBEAT_BYTES.length, false)) this.writeOut(HEARTBEAT_BYTES)
  }

  /** @internal The HTTP/2 session the stream was on, kept: a stream reset no longer says. */
  get session (): Http2Session | undefined {
    return this.http2Session
  }

  /** @internal The response the stream is written to, whose connection shutdown lets go. */
  get response (): RawResponse {
    return this.res
  }

  /**
   * @internal Ends the stream because the server is closing, after a `retry:` of `retry` ms: its client
   * reconnects after that delay (to another instance), which shutdown draws at random for each stream.
   */
  shutdown (retry: number): void {
    if (!this.ended) this.pending += frameRetry(retry)
    this.end(new FST_SSE_SERVER_CLOSING())
  }

  /** @internal Drops the stream at once, with whatever was waiting for the client. */
  destroy (reason: Error): void {
    if (this.transportOpen) {
      if (this.http2) (this.target as ServerHttp2Stream).close(http2Constants.NGHTTP2_CANCEL)
      else (this.res as ServerResponse).destroy()
    }
    // Its slot is free now: over HTTP/2 the stream closes only once its RST_STREAM is sent, which waits behind
    // what the frozen client's connection holds, maybe for good.
    this.openStreams.letGo(this)
    if (!this.ended) {
      this.ended = true
      this.pending = ''
      this.finish(reason)
    }
  }

  /**
   * The one rule for a client that is behind: it is when what it was given before the last two turns of the event
   * loop, and has not taken, is more than maxBufferedBytes (plus the allowance of an oversized write on its way).
   * A bounded write to such a client drops it; any other write is admitted. False if nothing may be written.
   */
  private admit (size: number, bounded: boolean): boolean {
    if (this.ended) return false
    if (this.turnOfWrites !== turn) {
      this.writtenLastTurn = this.turnOfWrites === turn - 1 ? this.writtenThisTurn : 0
      this.writtenThisTurn = 0
      this.turnOfWrites = turn
    }
    if (turnsToCount === 0) setImmediate(endTurn)
    turnsToCount = 2
    const limit = this.openStreams.maxBufferedBytes
    if (bounded && this.waitingFromEarlierTurns() > limit + this.allowance) {
      this.dropSlowClient()
      return false
    }
    this.writtenThisTurn += size
    if (size > limit && size > this.allowance) this.allowance = size
    return true
  }

  /**
   * What the client was given before the last two turns and has not taken. A compressor's input, and what waits to
   * be handed to it, count only while the client holds its output back: until then they wait for the CPU (a busy
   * thread pool), not for the client.
   */
  private waitingFromEarlierTurns (): number {
    const compressor = this.compressor
    const target = this.target
    const waiting = compressor === undefined
      ? this.pending.length + target.writableLength
      : compressor.readableLength + target.writableLength +
        (target.writableNeedDrain ? this.pending.length + compressor.writableLength : 0)
    return waiting - this.writtenThisTurn - this.writtenLastTurn
  }

  /** Channel events this tick holds for the stream go ahead of what it writes itself. */
  private catchUpChannels (): void {
    const subscriptions = this.subscriptions
    for (let i = 0; i < subscriptions.length; i++) subscriptions[i].channel.catchUp(subscriptions[i])
  }

  /** Queues a frame of `events` events (0: a comment, a `retry:`). */
  private queue (frame: string, bounded: boolean, own: boolean, events: number): boolean {
    if (own) this.catchUpChannels()
    if (!this.admit(frame.length, bounded)) return false
    this.stats.eventsSent += events
    this.pending += frame
    if (this.pending.length >= FLUSH_AT) {
      this.flush()
    } else if (!this.flushScheduled) {
      this.flushScheduled = true
      process.nextTick(flushLater, this)
    }
    return !this.needsDrain
  }

  private writeOut (text: string | Buffer): void {
    // Encoded here rather than by the sink (as it would): the stats then count bytes as they are, for nothing more,
    // where measuring a string's UTF-8 length would read it once more.
    const chunk = typeof text === 'string' ? Buffer.from(text) : text
    this.quietTicks = 0
    this.written += chunk.length
    this.stats.bytesSent += chunk.length
    const written = this.sink.write(chunk)
    this.compressor?.flush(this.flushKind)
    if (!written && !this.needsDrain) {
      this.needsDrain = true
      if (!this.drainListened) {
        this.drainListened = true
        this.sink.on('drain', () => this.onDrain())
      }
    }
  }

  private dropSlowClient (): void {
    const buffered = this.bufferedBytes
    const limit = this.openStreams.maxBufferedBytes
    this.log.warn({ bufferedBytes: buffered, maxBufferedBytes: limit },
      'fastify-sse-h2: a client fell behind by more than maxBufferedBytes; its stream was closed')
    const reason = new FST_SSE_SLOW_CLIENT(buffered, limit)
    publishStreamDrop(this, reason)
    this.destroy(reason)
  }

  private end (reason: Error): void {
    if (this.ended) return
    this.endReason ??= reason
    // What was published before the close goes out before the end; a replay still being read, once it is in.
    this.catchUpChannels()
    if (this.ended || this.subscriptions.some(holdsBack)) return
    this.ended = true
    if (this.transportOpen) {
      // Through writeOut, so that a client that never takes these last bytes is still dropped after writeTimeout.
      if (this.pending !== '') this.writeOut(this.pending)
      // A compressor ends the target through its pipe, once its last bytes are out.
      if (this.compressor !== undefined) this.compressor.end()
      else this.res.end()
    }
    this.pending = ''
    this.finish(this.endReason)
  }

  private finish (reason: Error): void {
    // A stream closed by the server stays registered until its connection lets go (so that writeTimeout still
    // applies); its quiet count can never reach a heartbeat, so nothing is written after the end.
    this.quietTicks = -Infinity
    this.closeReason = reason
    this.controller?.abort(reason)
    this.releaseDrainWait()
    for (const subscription of this.subscriptions) subscription.channel.unsubscribe(subscription)
    this.subscriptions.length = 0
    if (this.counted) this.stats.streamClosed(this, this.http2, reason as FastifyError)
  }

  private onDrain (): void {
    this.needsDrain = false
    this.flush()
    if (this.needsDrain) return
    this.allowance = 0
    this.releaseDrainWait()
  }

  private releaseDrainWait (): void {
    const wait = this.drainWait
    if (wait === undefined) return
    this.drainWait = undefined
    wait.resolve()
  }

  private onTransportClose (): void {
    this.transportOpen = false
    this.compressor?.destroy()
    this.openStreams.delete(this)
    if (!this.ended) {
      this.ended = true
      this.pending = ''
      this.finish(new FST_SSE_CLIENT_CLOSED())
    }
  }

  // A pipelined response queued behind others has no socket yet, and Node never closes it if the socket closes
  // before its turn (it closes it with the socket only once it has it): the socket tells until then.
  private watchQueued (res: ServerResponse): void {
    const socket = res.req.socket
    const onSocketClose = (): void => this.onTransportClose()
    socket.once('close', onSocketClose)
    res.once('socket', () => socket.removeListener('close', onSocketClose))
  }

  private transportGone (): boolean {
    if (this.http2) {
      const stream = this.target as ServerHttp2Stream
      return stream.destroyed || stream.closed
    }
    // The request's socket: a pipelined response has none of its own until the responses before it are sent.
    return (this.res as ServerResponse).req.socket.destroyed
  }
}

function holdsBack (subscription: Subscription): boolean {
  return subscription.replaying || subscription.channel.holdsBack(subscription.stream)
}

// Node emits 'error' on an HTTP/1.1 response only for a write after its end, which the stream never does;
// without a listener such an error would crash the process, so one is there. (HTTP/2's compatibility layer
// never forwards errors to the response.)
/* c8 ignore next */
function onResponseError (): void {}

function flushLater (stream: EventStream): void {
  stream.flush()
}

// zlib fails only on a write after its end, which the stream never does (it stops writing once it ends); a
// listener is there so that such an error could never crash the process.
/* c8 ignore next */
function onCompressorError (): void {}

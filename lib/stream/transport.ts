import { constants as http2Constants } from 'node:http2'
import type { ServerHttp2Stream } from 'node:http2'
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Writable } from 'node:stream'
import type { FastifyBaseLogger, FastifyError } from 'fastify'
import type { SseMessage, SseSerializer } from '../core/events'
import type { Stats } from '../observe/stats'
import type { StreamGroup } from './stream-group'
import { createCompressor, FLUSH, type Compressor, type SseEncoding } from './compression'
import { currentTurn } from './turns'
import { isGone, targetOf, watchClose, writeHeaders, type RawResponse } from './response'
import { HEARTBEAT_FRAME, frameComment, frameEvent, frameRetry } from '../protocol/framing'
import { publishStreamDrop } from '../observe/diagnostics'
import {
  FST_SSE_CLIENT_CLOSED, FST_SSE_FROZEN_CLIENT, FST_SSE_SLOW_CLIENT, FST_SSE_STREAM_ENDED
} from '../core/errors'

/**
 * Where a stream is in its life. `unanswered`: its headers wait (a channel stream waits for its store to say where it
 * starts), and so do its frames. `open`: headers sent, counted as open. `ended`: nothing more will be written; its
 * last bytes may still be on their way to the client. A close asked for while events are still owed to the stream (a
 * replay being read) is its `reason`, set before it ends.
 */
type Phase = 'unanswered' | 'open' | 'ended'

// Frames produced without yielding to the event loop are written together, up to this many characters.
const FLUSH_AT = 16 * 1024
// One Buffer written to every stream it is due: no encoding, no copy.
const HEARTBEAT_BYTES = Buffer.from(HEARTBEAT_FRAME)
// Bits of a stream's flags.
const CONNECTED = 1
const FLUSH_SCHEDULED = 2
const NEEDS_DRAIN = 4
const DRAIN_LISTENED = 8

interface DrainWait {
  promise: Promise<void>
  resolve: () => void
}

/**
 * One open event stream's transport: what waits to be written, whether the client is behind, whether it is closed.
 * It writes to the HTTP/2 stream itself, or to the HTTP/1.1 response. Every write goes through `admit()`, the one
 * rule for a client that is behind. It knows nothing of channels: the stream that carries them (EventStream) builds
 * on it through the three hooks it must define.
 */
export abstract class StreamTransport<Message extends SseMessage = SseMessage> {
  /** The id the client last received (`Last-Event-ID` header, or the query fallback), or `undefined`. */
  readonly lastEventId: string | undefined
  private phase: Phase = 'unanswered'
  // Why it ends (or ended): set when a close is asked for, or when it ends otherwise.
  private reason: Error | undefined
  // Flags, one field for all (fields cost every open stream 8 bytes each): see the accessors below.
  private flags = CONNECTED
  // Made on first use of `signal`: a channel subscriber that never asks costs no controller.
  private controller: AbortController | undefined
  private readonly res: RawResponse
  // The HTTP/2 stream itself, so writes skip the compatibility layer; the response for HTTP/1.1.
  private readonly target: ServerHttp2Stream | ServerResponse
  private compressor: Compressor | undefined
  private flushKind = 0
  private readonly log: FastifyBaseLogger
  private readonly serializer: SseSerializer
  private readonly group: StreamGroup
  private pending = ''
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
  /** @internal Heartbeat ticks since the last write. */
  private quietTicks = 0
  /** @internal What the heartbeat last saw the client take, and since when (the heartbeat's ms), or 0. */
  private takenAtCheck = 0
  /** @internal */
  private stalledSince = 0

  /** @internal */
  constructor (res: RawResponse, log: FastifyBaseLogger, lastEventId: string | undefined, serializer: SseSerializer,
    group: StreamGroup) {
    this.lastEventId = lastEventId
    this.res = res
    this.target = targetOf(res)
    this.log = log
    this.serializer = serializer
    this.group = group
  }

  /** @internal The plugin instance's counters. */
  get stats (): Stats {
    return this.group.stats
  }

  // On HTTP/2 its target is the HTTP/2 stream, not the response.
  private get http2 (): boolean {
    return this.target !== this.res
  }

  // Where frames are written: the target, or a compressor piped into it.
  private get sink (): Writable {
    return this.compressor ?? this.target
  }

  // False once the response is finished or the connection gone.
  private get connected (): boolean {
    return (this.flags & CONNECTED) !== 0
  }

  private get flushScheduled (): boolean {
    return (this.flags & FLUSH_SCHEDULED) !== 0
  }

  // The sink said to wait for 'drain'.
  private get needsDrain (): boolean {
    return (this.flags & NEEDS_DRAIN) !== 0
  }

  private get drainListened (): boolean {
    return (this.flags & DRAIN_LISTENED) !== 0
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

  /** Bytes not yet taken by the client: frames not yet written, and written ones it has not read. */
  get bufferedBytes (): number {
    if (!this.connected) return 0
    const compressor = this.compressor
    return this.pending.length + this.heldBytes() + this.sink.writableLength +
      (compressor === undefined ? 0 : compressor.readableLength + this.target.writableLength)
  }

  /** @internal How much of what was written the transport (or compressor) has taken: grows while the client reads. */
  get takenBytes (): number {
    return this.written - this.sink.writableLength
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

  /** Resolves when what was sent has been handed to the client, or the stream closed. Never rejects. */
  drained (): Promise<void> {
    if (!this.needsDrain || this.phase === 'ended') return Promise.resolve()
    if (this.drainWait === undefined) {
      let release!: () => void
      const promise = new Promise<void>((resolve) => { release = resolve })
      this.drainWait = { promise, resolve: release }
    }
    return this.drainWait.promise
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
    writeHeaders(this.res, statusCode, headers)
    if (headOnly) {
      this.end(new FST_SSE_STREAM_ENDED())
      return
    }
    this.phase = 'open'
    if (encoding !== undefined) {
      const compressor = createCompressor(encoding)
      compressor.on('error', onCompressorError)
      compressor.pipe(this.target)
      this.compressor = compressor
      this.flushKind = FLUSH[encoding]
    }
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
    this.flags &= ~CONNECTED
    this.finish(reason)
  }

  /** @internal Sends an event from a pulled source: the source is paused instead of being bounded. */
  sendPulled (message: unknown): boolean {
    return this.queue(frameEvent(message as SseMessage, this.serializer), false, false, 1)
  }

  /** @internal Writes what is pending, unless the client is behind. */
  flush (): void {
    this.flags &= ~FLUSH_SCHEDULED
    if (this.needsDrain || this.pending === '' || this.phase !== 'open') return
    const chunk = this.pending
    this.pending = ''
    this.writeOut(chunk)
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
    // Read before the reset: a stream reset no longer says which session it was on.
    const session = this.http2 ? (this.target as ServerHttp2Stream).session : undefined
    if (this.connected) {
      if (this.http2) (this.target as ServerHttp2Stream).close(http2Constants.NGHTTP2_CANCEL)
      else (this.res as ServerResponse).destroy()
    }
    // Its slot is free now: over HTTP/2 the stream closes only once its RST_STREAM is sent, which waits behind
    // what the frozen client's connection holds, maybe for good.
    this.group.letGo(this, session)
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

  /**
   * What the stream holds back of its own for now (behind a replay being read): not taken by the client, it counts
   * against it only while the client holds back what it was given (it waits for the store, not for the client).
   */
  protected abstract heldBytes (): number

  /**
   * The one rule for a client that is behind: it is when what it was given before the last two turns of the event
   * loop, and has not taken, is more than maxBufferedBytes (plus the allowance of an oversized write on its way).
   * A bounded write to such a client drops it; any other write is admitted. False if nothing may be written.
   */
  protected admit (size: number, bounded: boolean): boolean {
    if (this.phase === 'ended') return false
    const turn = currentTurn()
    if (this.turnOfWrites !== turn) {
      this.writtenLastTurn = this.turnOfWrites === turn - 1 ? this.writtenThisTurn : 0
      this.writtenThisTurn = 0
      this.turnOfWrites = turn
    }
    const limit = this.group.maxBufferedBytes
    if (bounded && this.waitingFromEarlierTurns() > limit + this.allowance) {
      const buffered = this.bufferedBytes
      this.drop(new FST_SSE_SLOW_CLIENT(buffered, limit), { bufferedBytes: buffered, maxBufferedBytes: limit },
        'a client fell behind by more than maxBufferedBytes')
      return false
    }
    this.writtenThisTurn += size
    if (size > limit && size > this.allowance) this.allowance = size
    return true
  }

  /**
   * What the client was given before the last two turns and has not taken. A compressor's input, and what waits to
   * be handed to it, count only while the client holds its output back: until then they wait for the CPU (a busy
   * thread pool), not for the client; and so do the stream's own frames held behind a replay (they wait for the store).
   */
  private waitingFromEarlierTurns (): number {
    const compressor = this.compressor
    const target = this.target
    const held = target.writableNeedDrain ? this.heldBytes() : 0
    const waiting = compressor === undefined
      ? this.pending.length + held + target.writableLength
      : compressor.readableLength + target.writableLength +
        (target.writableNeedDrain ? this.pending.length + held + compressor.writableLength : 0)
    return waiting - this.writtenThisTurn - this.writtenLastTurn
  }

  /** Queues a frame of `events` events (0: a comment, a `retry:`); `own`: the stream's own, after what it is owed. */
  private queue (frame: string, bounded: boolean, own: boolean, events: number): boolean {
    if (own) this.catchUp()
    if (!this.admit(frame.length, bounded)) return false
    this.stats.eventsSent += events
    this.pending += frame
    if (this.pending.length >= FLUSH_AT) {
      this.flush()
    } else if (!this.flushScheduled) {
      this.flags |= FLUSH_SCHEDULED
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
      this.flags |= NEEDS_DRAIN
      if (!this.drainListened) {
        this.flags |= DRAIN_LISTENED
        this.sink.on('drain', () => this.onDrain())
      }
    }
  }

  /** Drops a client that is behind (slow) or takes nothing (frozen): a warning, the diagnostics, and its end. */
  private drop (reason: FastifyError, details: object, message: string): void {
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
    if (this.connected) {
      // Through writeOut, so that a client that never takes these last bytes is still dropped after writeTimeout.
      if (this.pending !== '') this.writeOut(this.pending)
      // A compressor ends the target through its pipe, once its last bytes are out.
      if (this.compressor !== undefined) this.compressor.end()
      else this.res.end()
    }
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

  private onDrain (): void {
    this.flags &= ~NEEDS_DRAIN
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
    this.flags &= ~CONNECTED
    this.compressor?.destroy()
    this.group.delete(this)
    if (this.phase !== 'ended') {
      this.pending = ''
      this.finish(new FST_SSE_CLIENT_CLOSED())
    }
  }
}

function flushLater (stream: StreamTransport): void {
  stream.flush()
}

function sayOpen (stream: StreamTransport): void {
  stream.sayOpen()
}

// zlib fails only on a write after its end, which the stream never does (it stops writing once it ends); a
// listener is there so that such an error could never crash the process.
/* c8 ignore next */
function onCompressorError (): void {}

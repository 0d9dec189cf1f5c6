import type { StreamTransport } from './transport'
import type { Lifetimes } from './lifetimes'
import type { StreamsBySession } from './streams-by-session'

// The timer ticks at least four times an interval, so a stream is never silent for longer than the interval:
// it gets its comment between 3/4 and 1 interval after its last write.
const TICKS_PER_BEAT = 4
// A tick looks at this many streams, then lets the event loop run before it goes on: a round over 100,000 streams
// holds it for a few milliseconds at a time, not for the whole round. It looks at them session by session: an HTTP/2
// session sends what was written to its streams during a turn of the loop in one write, so a session whose streams
// were spread over many slices would send as many (at 100,000 streams on 1,000 connections, 25 writes a session a
// round, which cost more CPU than the heartbeats themselves), and one that sends a great many frames at once costs
// more a frame (node:http2 alone: 1,000 at once cost 1.4x what 100 at once do).
const SLICE = 250
// Times are ms since this file loaded (from 1: a stream keeps 0 for none): small integers for 24 days, where
// Date.now() is a double, and a double in a stream's field costs every stream a box of its own.
const EPOCH = Date.now() - 1

/**
 * One timer for every open stream, running only while there are streams: it writes heartbeats to the quiet
 * ones, and drops those whose client has taken nothing of what waits for it for longer than writeTimeout.
 */
export class Heartbeat {
  private readonly tickMs: number
  private readonly ticksPerBeat: number
  private readonly writeTimeout: number
  private readonly streams: StreamsBySession<StreamTransport>
  // The group's stream deadlines, checked at each tick.
  private readonly lifetimes: Lifetimes | undefined
  private timer: NodeJS.Timeout | undefined
  // The streams a tick has yet to look at, while it lets the event loop run, and when it began; the ticks it stands
  // for (those that came while the last was under way, which a busy loop makes longer than a tick, count too).
  private walk: IterableIterator<Set<StreamTransport>> | undefined
  // The streams of the session it is at, when a slice ended inside them.
  private walkInSession: IterableIterator<StreamTransport> | undefined
  private now = 0
  private ticks = 1
  private missed = 0

  /** Both intervals in ms, 0 for off; at least one of them is on. */
  constructor (heartbeatInterval: number, writeTimeout: number, streams: StreamsBySession<StreamTransport>,
    lifetimes?: Lifetimes) {
    const periods = [heartbeatInterval, writeTimeout].filter((ms) => ms > 0).map((ms) => ms / TICKS_PER_BEAT)
    this.tickMs = Math.min(...periods)
    this.ticksPerBeat = heartbeatInterval > 0 ? Math.round(heartbeatInterval / this.tickMs) : Infinity
    this.writeTimeout = writeTimeout > 0 ? writeTimeout : Infinity
    this.streams = streams
    this.lifetimes = lifetimes
  }

  start (): void {
    this.timer = setInterval(tick, this.tickMs, this)
    // Open streams keep their server alive; the timer alone must not keep the process running.
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
    this.walk = undefined
    this.walkInSession = undefined
    this.missed = 0
  }

  /** @internal A tick looks at every stream, a slice at a time; while one is under way (a busy loop), the next waits. */
  tick (): void {
    this.lifetimes?.check()
    if (this.walk !== undefined) {
      this.missed++
      return
    }
    this.now = Date.now() - EPOCH
    this.ticks = 1 + this.missed
    this.missed = 0
    this.walk = this.streams.bySession()
    this.slice()
  }

  /** @internal */
  slice (): void {
    const walk = this.walk
    if (walk === undefined) return
    const { now, ticks, ticksPerBeat, writeTimeout } = this
    let looked = 0
    let streams = this.walkInSession
    for (;;) {
      if (streams === undefined) {
        const next = walk.next()
        if (next.done === true) break
        streams = next.value.values()
      }
      // Set and Map iterators have no return(): leaving a loop leaves them where they were, for the next slice.
      for (const stream of streams) {
        stream.tick(now, ticks, ticksPerBeat, writeTimeout)
        if (++looked === SLICE) {
          this.walkInSession = streams
          setImmediate(slice, this)
          return
        }
      }
      streams = undefined
    }
    this.walk = undefined
    this.walkInSession = undefined
  }
}

function tick (heartbeat: Heartbeat): void {
  heartbeat.tick()
}

function slice (heartbeat: Heartbeat): void {
  heartbeat.slice()
}

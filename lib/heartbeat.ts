import type { EventStream } from './event-stream'

// The timer ticks four times an interval, so a stream is never silent for longer than the interval:
// it gets its comment between 3/4 and 1 interval after its last write.
const TICKS_PER_BEAT = 4

/** One timer for every open stream, running only while there are streams to keep alive. */
export class Heartbeat {
  private readonly tickMs: number
  private readonly streams: ReadonlySet<EventStream>
  private timer: NodeJS.Timeout | undefined

  constructor (intervalMs: number, streams: ReadonlySet<EventStream>) {
    this.tickMs = intervalMs / TICKS_PER_BEAT
    this.streams = streams
  }

  start (): void {
    this.timer = setInterval(tick, this.tickMs, this.streams)
    // Open streams keep their server alive; the timer alone must not keep the process running.
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
  }
}

function tick (streams: ReadonlySet<EventStream>): void {
  for (const stream of streams) {
    if (++stream.quietTicks >= TICKS_PER_BEAT) stream.heartbeat()
  }
}

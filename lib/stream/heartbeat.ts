import type { StreamTransport } from './transport'

// The timer ticks at least four times an interval, so a stream is never silent for longer than the interval:
// it gets its comment between 3/4 and 1 interval after its last write.
const TICKS_PER_BEAT = 4

/**
 * One timer for every open stream, running only while there are streams: it writes heartbeats to the quiet
 * ones, and drops those whose client has taken nothing of what waits for it for longer than writeTimeout.
 */
export class Heartbeat {
  private readonly tickMs: number
  private readonly ticksPerBeat: number
  private readonly writeTimeout: number
  private readonly streams: ReadonlySet<StreamTransport>
  private timer: NodeJS.Timeout | undefined

  /** Both intervals in ms, 0 for off; at least one of them is on. */
  constructor (heartbeatInterval: number, writeTimeout: number, streams: ReadonlySet<StreamTransport>) {
    const periods = [heartbeatInterval, writeTimeout].filter((ms) => ms > 0).map((ms) => ms / TICKS_PER_BEAT)
    this.tickMs = Math.min(...periods)
    this.ticksPerBeat = heartbeatInterval > 0 ? Math.round(heartbeatInterval / this.tickMs) : Infinity
    this.writeTimeout = writeTimeout > 0 ? writeTimeout : Infinity
    this.streams = streams
  }

  start (): void {
    this.timer = setInterval(tick, this.tickMs, this)
    // Open streams keep their server alive; the timer alone must not keep the process running.
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** @internal */
  tick (): void {
    const now = Date.now()
    for (const stream of this.streams) stream.tick(now, this.ticksPerBeat, this.writeTimeout)
  }
}

function tick (heartbeat: Heartbeat): void {
  heartbeat.tick()
}

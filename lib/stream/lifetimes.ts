import type { StreamTransport } from './transport'
import { drawRetry, type ShutdownRetry } from './shutdown-retry'
import { FST_SSE_EXPIRED, FST_SSE_MAX_AGE } from '../core/errors'

// Deadlines are kept by the quarter second they fall in: a check closes the streams of every quarter it has passed.
const BUCKET_MS = 250
// A stream is closed for maxStreamAge at a moment drawn between 90% and all of it: streams opened together (a reconnect
// storm after a deploy) do not all come back together, and each generation spreads further.
const MAX_AGE_SPREAD = 0.1
// A group without a heartbeat timer (heartbeats and writeTimeout both off) checks on a timer of its own, this often,
// while it holds deadlines.
const OWN_CHECK_MS = 1000

/**
 * The deadlines of one stream group's streams: `maxStreamAge`, drawn for each stream as it opens, and a stream's own
 * `expiresAt`. Checked at each tick of the group's heartbeat timer (no timer per stream): a stream is closed at the
 * first check after its deadline, with a `retry:` drawn from the window, so that its client comes back. Only streams
 * with a deadline are held here: a stream without one costs nothing.
 */
export class Lifetimes {
  private readonly maxStreamAge: number
  private readonly retry: ShutdownRetry
  private readonly ownTimer: boolean
  // The streams due in each quarter second, by its number since the epoch.
  private readonly buckets = new Map<number, Set<StreamTransport>>()
  // Each stream's bucket, times 2, plus 1 when the deadline is its expiresAt (else maxStreamAge's).
  private readonly entries = new Map<StreamTransport, number>()
  private checked = 0
  private timer: NodeJS.Timeout | undefined

  /** `ownTimer`: the group has no heartbeat timer to call check(), so this runs one while it holds deadlines. */
  constructor (maxStreamAge: number, retry: ShutdownRetry, ownTimer: boolean) {
    this.maxStreamAge = maxStreamAge
    this.retry = retry
    this.ownTimer = ownTimer
  }

  /** A stream of the group opened: with maxStreamAge, its deadline is drawn. */
  opened (stream: StreamTransport): void {
    if (this.maxStreamAge === 0) return
    this.set(stream, Date.now() + this.maxStreamAge * (1 - MAX_AGE_SPREAD * Math.random()), false)
  }

  /** The stream closes at `at` (ms since the epoch), unless maxStreamAge closes it first. */
  expireAt (stream: StreamTransport, at: number): void {
    const entry = this.entries.get(stream)
    if (entry !== undefined && Math.floor(entry / 2) <= bucketOf(at)) return
    this.set(stream, at, true)
  }

  /** The stream ended: it has no deadline any more. */
  remove (stream: StreamTransport): void {
    const entry = this.entries.get(stream)
    if (entry === undefined) return
    this.entries.delete(stream)
    const bucket = Math.floor(entry / 2)
    const due = this.buckets.get(bucket) as Set<StreamTransport>
    due.delete(stream)
    if (due.size === 0) this.buckets.delete(bucket)
    if (this.entries.size === 0) this.stopTimer()
  }

  /** Closes every stream whose deadline has passed. */
  check (): void {
    if (this.entries.size === 0) return
    const now = bucketOf(Date.now())
    if (now - this.checked > this.buckets.size) {
      // Long since the last check (a process suspended): fewer buckets held than quarters passed.
      for (const bucket of [...this.buckets.keys()]) if (bucket <= now) this.closeDue(bucket)
    } else {
      for (let bucket = this.checked + 1; bucket <= now; bucket++) this.closeDue(bucket)
    }
    this.checked = now
  }

  private set (stream: StreamTransport, at: number, expires: boolean): void {
    this.remove(stream)
    // Due in the first quarter that ends at or after it (never early); one passed already: at the next check.
    const bucket = Math.max(bucketOf(at), this.checked + 1)
    this.entries.set(stream, bucket * 2 + (expires ? 1 : 0))
    let due = this.buckets.get(bucket)
    if (due === undefined) {
      due = new Set()
      this.buckets.set(bucket, due)
    }
    due.add(stream)
    if (this.ownTimer && this.timer === undefined) {
      this.timer = setInterval(checkLifetimes, OWN_CHECK_MS, this)
      // Open streams keep their server alive; the timer alone must not keep the process running.
      this.timer.unref()
    }
  }

  private closeDue (bucket: number): void {
    const due = this.buckets.get(bucket)
    if (due === undefined) return
    this.buckets.delete(bucket)
    for (const stream of due) {
      const expires = (this.entries.get(stream) as number) % 2 === 1
      this.entries.delete(stream)
      stream.retire(drawRetry(this.retry), expires ? new FST_SSE_EXPIRED() : new FST_SSE_MAX_AGE())
    }
    if (this.entries.size === 0) this.stopTimer()
  }

  private stopTimer (): void {
    clearInterval(this.timer)
    this.timer = undefined
  }
}

function bucketOf (ms: number): number {
  return Math.ceil(ms / BUCKET_MS)
}

function checkLifetimes (lifetimes: Lifetimes): void {
  lifetimes.check()
}

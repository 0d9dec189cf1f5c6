'use strict'

const { setTimeout: sleep } = require('node:timers/promises')
const { MISSED_EVENT } = require('../..')

const SYMBOLS = ['ALPHA', 'BRAVO', 'CHARLIE', 'DELTA', 'ECHO', 'FOXTROT',
  'GOLF', 'HOTEL', 'INDIA', 'JULIET', 'KILO', 'LIMA']

// A client that was away longer than this many events gets a `missed` event and the live ones,
// not a flood of old prices.
const MAX_REPLAY = 1000

/**
 * The tickers' shared clock. Event n of a symbol is due at `start + n * interval`: every stream of a symbol,
 * on any server, sends the same event under the same id, and a stream that resumes after id n can compute
 * every event it missed. Intervals are at most half the `retry` delay (1 s), so a stream that reconnects
 * always has at least two events to catch up on: a resume that skipped any would show as a gap.
 */
function createTickers (start = Date.now()) {
  const tickers = new Map(SYMBOLS.map((symbol, index) => [symbol, {
    symbol,
    interval: 250 + (index * 97) % 250,
    base: 20 + (index * 37) % 180,
    phase: index * 1.3
  }]))

  function latest (ticker) {
    return Math.floor((Date.now() - start) / ticker.interval)
  }

  function tick (ticker, n) {
    // A wavy but deterministic price: the same id always carries the same value.
    const wave = 0.04 * Math.sin(n / 9 + ticker.phase) + 0.015 * Math.sin(n / 2.3 + 2 * ticker.phase) +
      0.005 * Math.sin(n * 1.7)
    const price = Math.round(ticker.base * (1 + wave) * 100) / 100
    return { id: String(n), event: 'tick', data: { price, time: start + n * ticker.interval } }
  }

  /** The event source of one symbol's stream: what the client missed after `lastEventId`, then live events. */
  function source (symbol) {
    const ticker = tickers.get(symbol)
    return async function * ticks ({ signal, lastEventId }) {
      const now = latest(ticker)
      const last = lastEventId === undefined ? undefined : Number(lastEventId)
      let n = now
      if (last !== undefined) {
        if (Number.isSafeInteger(last) && last >= 0 && last <= now && now - last <= MAX_REPLAY) {
          n = last + 1
        } else {
          // An id this clock never gave (a server restarted since) or too old to replay.
          yield { event: MISSED_EVENT, data: { oldestId: String(now) } }
        }
      }
      while (true) {
        const wait = start + n * ticker.interval - Date.now()
        if (wait > 0) await sleep(wait, undefined, { signal })
        yield tick(ticker, n)
        n++
      }
    }
  }

  /**
   * Publishes each symbol's events, on the same clock, to `channelOf(symbol)`, with `n` and the symbol in the data:
   * on a stream of several channels the id is the stream's cursor, not n. Returns a function that stops it.
   */
  function publish (channelOf) {
    const timers = new Map()
    for (const ticker of tickers.values()) {
      const channel = channelOf(ticker.symbol)
      let n = latest(ticker) + 1
      const next = () => {
        // A late timer publishes every event due by now: n stays a run without gaps.
        for (; n <= latest(ticker); n++) {
          const { event, data } = tick(ticker, n)
          // Rejects only once the demo is closing: nobody is left to miss it.
          channel.publish({ event, data: { symbol: ticker.symbol, n, ...data } }).catch(() => {})
        }
        timers.set(ticker, setTimeout(next, start + n * ticker.interval - Date.now()))
      }
      next()
    }
    return () => { for (const timer of timers.values()) clearTimeout(timer) }
  }

  return { symbols: SYMBOLS, has: (symbol) => tickers.has(symbol), source, publish }
}

module.exports = { createTickers }

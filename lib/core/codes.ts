// The one list of each set of codes a stream can end, be refused or be replayed with. The exported types, the counters
// of app.sse.stats(), the diagnostics messages and the docs' tables (checked by test/codes.test.ts) are made from them.

/** The reasons a stream that opened closes with: its `signal.reason.code`. */
export const CLOSE_CODES = [
  'FST_SSE_CLIENT_CLOSED', 'FST_SSE_STREAM_ENDED', 'FST_SSE_SERVER_CLOSING', 'FST_SSE_SLOW_CLIENT', 'FST_SSE_FROZEN_CLIENT',
  'FST_SSE_EXPIRED', 'FST_SSE_MAX_AGE'
] as const

/** Why a stream was refused before it opened. */
export const REFUSAL_CODES = [
  'FST_SSE_TOO_MANY_STREAMS', 'FST_SSE_SERVER_CLOSING', 'FST_SSE_CHANNEL_UNAVAILABLE', 'FST_SSE_ALREADY_SENT'
] as const

/** How a subscriber's `Last-Event-ID` replay went. */
export const REPLAY_OUTCOMES = ['resumed', 'missed', 'failed'] as const

/** The reasons a stream that opened closes with: its `signal.reason.code`. */
export type SseCloseCode = typeof CLOSE_CODES[number]

/** Why a stream was refused before it opened. */
export type SseRefusalCode = typeof REFUSAL_CODES[number]

/** How a subscriber's `Last-Event-ID` replay went. */
export type SseReplayOutcome = typeof REPLAY_OUTCOMES[number]

/** A counter at 0 for each code of a list. */
export function zeroCounts<Code extends string> (codes: readonly Code[]): Record<Code, number> {
  const counts = {} as Record<Code, number>
  for (const code of codes) counts[code] = 0
  return counts
}

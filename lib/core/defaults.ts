// Defaults that several places state: each store, and the plugin's options (whose doc comments test/codes.test.ts
// checks against these).

/** Events each channel keeps for replay. */
export const DEFAULT_HISTORY_SIZE = 1000

/** Milliseconds an event stays available for replay. */
export const DEFAULT_HISTORY_MAX_AGE = 300_000

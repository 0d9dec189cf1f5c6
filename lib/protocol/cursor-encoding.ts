// The id of every event of a stream of several channels is a cursor: for each channel of the stream, the position
// of the last of its events the stream wrote (or its filter skipped), so that one Last-Event-ID resumes all of them.
// Positions are the store's, the same in every process: a cursor written by one instance resumes on another.
//
//   ~ <salt> <base> { . <key> [ <delta> [ _ <minor> ] ] }
//
// Numbers are base 36 (0-9a-z). <key>: 6 characters, a hash of the channel's name started from <salt> (one digit);
// <delta>: the first number of the position minus <base> ('-' before it when negative), so that the positions of
// one stream, which are close (a counter, or Redis's milliseconds), cost a few characters each; <minor>: the second
// number (`<ms>-<seq>`), when not 0. A key alone: the channel had no position yet (it had published nothing).
// Every character is one that a header and a URL carry as it is (encodeURIComponent leaves `~`, `.`, `_`, `-`).
// About 10 characters a channel: 50 channels take about 500.

/** The most channels one stream may carry: the cursor of that many stays under MAX_CURSOR_LENGTH. */
export const MAX_CURSOR_CHANNELS = 128
/** The longest cursor: 128 entries of the longest kind (30 characters) and the head. */
export const MAX_CURSOR_LENGTH = 4096
/** How many salts a stream may try to keep the keys of its channels apart. */
export const SALTS = 36

const MARK = '~'
const KEY_LENGTH = 6
const KEY_SPACE = 36 ** KEY_LENGTH
const KEY = /^[0-9a-z]{6}$/
const NUMBER = /^[0-9a-z]{1,11}$/
const DELTA = /^(-?)([0-9a-z]{1,11})(?:_([0-9a-z]{1,11}))?$/
/** Two entries of one key in a cursor we did not write: neither channel can tell which is its own. */
export const AMBIGUOUS = null

/** A cursor as read from a client: its salt, and the position of each key (undefined: none yet). */
export interface ReceivedCursor {
  salt: number
  positions: Map<string, string | undefined | typeof AMBIGUOUS>
  /**
   * False when an entry could not be read (a cut cursor, one with more entries than a stream carries): the entries
   * before it are read, and a channel not among them cannot be told where it stood.
   */
  complete: boolean
}

/** Whether `text` is a cursor as streams of several channels write them, whole. */
export function isCursor (text: string): boolean {
  return parseCursor(text)?.complete === true
}

/** The head of a cursor: its mark, salt and base. */
export function cursorHead (salt: number, base: number): string {
  return MARK + salt.toString(36) + base.toString(36)
}

/** One channel's entry of a cursor of base `base`: its key, and its position (undefined: it has none). */
export function cursorEntry (key: string, position: string | undefined, base: number): string {
  if (position === undefined) return '.' + key
  const dash = position.indexOf('-')
  const delta = wholeOf(position, 0, dash === -1 ? position.length : dash) - base
  let text = '.' + key + (delta < 0 ? '-' + base36(-delta) : base36(delta))
  const minor = dash === -1 ? 0 : wholeOf(position, dash + 1, position.length)
  if (minor !== 0) text += '_' + base36(minor)
  return text
}

// A stream writes an entry for every event of every channel: the usual small delta without toString(36).
const DIGITS = '0123456789abcdefghijklmnopqrstuvwxyz'

function base36 (value: number): string {
  return value < 36 ? DIGITS[value] : value.toString(36)
}

/**
 * The whole number written in decimal in `text` from `start` to `end`: a position's part, at most 16 digits and
 * exact in a double, read digit by digit (Number() takes a slow path past 15 digits).
 */
function wholeOf (text: string, start: number, end: number): number {
  let value = 0
  for (let i = start; i < end; i++) value = value * 10 + (text.charCodeAt(i) - 48)
  return value
}

/**
 * The key of a channel in cursors: FNV-1a of its name, started from the salt, in 6 base-36 digits. The same in every
 * process and version: cursors in flight depend on it. Two names of one stream share a key about once in 10^9
 * (the salt then changes); a channel that joins a stream on resume shares one with an entry of the client's cursor
 * about as rarely, and would resume from that entry.
 */
export function channelKey (name: string, salt: number): string {
  let hash = Math.imul(0x811c9dc5 ^ salt, 0x01000193)
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 0x01000193)
  return ((hash >>> 0) % KEY_SPACE).toString(36).padStart(KEY_LENGTH, '0')
}

export function majorOf (position: string): number {
  const dash = position.indexOf('-')
  return wholeOf(position, 0, dash === -1 ? position.length : dash)
}

/**
 * The positions of a cursor, by key, as far as its entries read (`complete` says whether all did); undefined if
 * `text` does not begin as a cursor we could have written.
 */
export function parseCursor (text: string): ReceivedCursor | undefined {
  if (text.length > MAX_CURSOR_LENGTH || text[0] !== MARK) return undefined
  const entries = text.split('.')
  const head = entries[0]
  const salt = wholeNumber(head.slice(1, 2))
  const base = wholeNumber(head.slice(2))
  if (salt === undefined || base === undefined) return undefined
  const positions: ReceivedCursor['positions'] = new Map()
  const last = Math.min(entries.length - 1, MAX_CURSOR_CHANNELS)
  for (let i = 1; i <= last; i++) {
    const entry = entries[i]
    const key = entry.slice(0, KEY_LENGTH)
    const position = entry.length > KEY_LENGTH ? positionOf(entry.slice(KEY_LENGTH), base) : undefined
    if (!KEY.test(key) || (entry.length > KEY_LENGTH && position === undefined)) return { salt, positions, complete: false }
    positions.set(key, positions.has(key) ? AMBIGUOUS : position)
  }
  return { salt, positions, complete: last === entries.length - 1 }
}

function positionOf (text: string, base: number): string | undefined {
  const match = DELTA.exec(text)
  if (match === null) return undefined
  const delta = wholeNumber(match[2]) as number
  const major = match[1] === '-' ? base - delta : base + delta
  const minor = match[3] === undefined ? 0 : wholeNumber(match[3])
  if (!Number.isSafeInteger(major) || major < 0 || minor === undefined) return undefined
  return minor === 0 ? String(major) : `${major}-${minor}`
}

function wholeNumber (text: string): number | undefined {
  if (!NUMBER.test(text)) return undefined
  const value = parseInt(text, 36)
  return Number.isSafeInteger(value) ? value : undefined
}

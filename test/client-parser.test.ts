import { test } from 'tap'
import fc from 'fast-check'
import { createParser } from 'eventsource-parser'
import { EventStreamParser } from '../lib/client/index'

// The client's parser against eventsource-parser (which the `eventsource` package uses): the same events, types, data
// and ids, the same retries and comments, for any stream cut anywhere, with any of the three line ends.

interface Seen {
  events: Array<{ type: string, data: string, id: string | undefined }>
  retries: number[]
  comments: string[]
}

function withOurs (pieces: string[]): Seen {
  const seen: Seen = { events: [], retries: [], comments: [] }
  const parser = new EventStreamParser({
    dispatch: (type, data, lastEventId) => {
      if (data !== undefined) seen.events.push({ type, data, id: lastEventId })
    },
    retry: (ms) => seen.retries.push(ms),
    comment: (text) => seen.comments.push(text)
  })
  for (const piece of pieces) parser.feed(piece)
  return seen
}

function withTheirs (pieces: string[]): Seen {
  const seen: Seen = { events: [], retries: [], comments: [] }
  const parser = createParser({
    onEvent: (event) => seen.events.push({ type: event.event ?? 'message', data: event.data, id: event.id }),
    onRetry: (ms) => seen.retries.push(ms),
    onComment: (text) => seen.comments.push(text)
  })
  for (const piece of pieces) parser.feed(piece)
  return seen
}

const text = fc.string({ unit: fc.constantFrom('a', 'b', ' ', ':', 'é', '😀', '1'), maxLength: 6 })
const line = fc.oneof(
  text.map((value) => `data:${value}`),
  text.map((value) => `data: ${value}`),
  // Each field with and without the space after its colon.
  fc.tuple(fc.constantFrom('', ' '), text).map(([space, value]) => `event:${space}${value}`),
  fc.tuple(fc.constantFrom('', ' '), fc.constantFrom('a', 'b', '1', '42')).map(([space, value]) => `id:${space}${value}`),
  fc.tuple(fc.constantFrom('', ' '), fc.constantFrom('1000', '50', 'x1', '')).map(([space, value]) => `retry:${space}${value}`),
  text.map((value) => `:${value}`),
  fc.constantFrom('data', 'event', 'id', 'unknown: x', 'data:', ''),
  fc.constant('')
)
const ending = fc.constantFrom('\n', '\r\n', '\r')
const stream = fc.array(fc.tuple(line, ending), { maxLength: 30 }).map((lines) => lines.map(([l, end]) => l + end).join(''))

function cut (whole: string, at: number[]): string[] {
  const points = [...new Set(at.map((point) => point % (whole.length + 1)))].sort((a, b) => a - b)
  const pieces: string[] = []
  let from = 0
  for (const point of points) {
    pieces.push(whole.slice(from, point))
    from = point
  }
  pieces.push(whole.slice(from))
  return pieces
}

test('the same events, retries and comments as eventsource-parser, however the stream is cut', async (t) => {
  fc.assert(fc.property(stream, fc.array(fc.nat(), { maxLength: 8 }), (whole, at) => {
    // A final LF: eventsource-parser holds a CR that ends its input until it sees whether an LF follows (ours takes
    // the line at once, and skips that LF). eventsource-parser fed the whole stream at once is the reference.
    const pieces = [...cut(whole, at), '\n']
    const ours = withOurs(pieces)
    const theirs = withTheirs([whole + '\n'])
    // eventsource-parser gives the id an event set itself; ours keeps the last one, as EventSource does: where an event
    // set one, they are the same.
    const same = ours.events.length === theirs.events.length && ours.events.every((event, i) =>
      event.type === theirs.events[i].type && event.data === theirs.events[i].data &&
      (theirs.events[i].id === undefined || event.id === theirs.events[i].id))
    if (!same) t.same(ours.events, theirs.events, JSON.stringify(pieces))
    t.same([ours.retries, ours.comments], [theirs.retries, theirs.comments], JSON.stringify(pieces))
    return true
  }), { numRuns: 500 })
})

test('the last event id is kept across events and set by an id: line even without data, as EventSource does', async (t) => {
  const ids: string[] = []
  const parser = new EventStreamParser({ dispatch: (type, data, id) => ids.push(`${type}:${String(data)}:${id}`), retry: () => {}, comment: () => {} }, 'start')
  parser.feed('data: a\n\nid: 7\n\ndata: b\n\nid: x\0y\ndata: c\n\nid\ndata: d\n\n')
  t.same(ids, ['message:a:start', 'message:undefined:7', 'message:b:7', 'message:c:7', 'message:d:'])
  parser.feed('data: cut short')
  parser.reset()
  parser.feed('\n')
  t.same(ids.length, 6, 'an event the stream ended in the middle of is dropped')
})

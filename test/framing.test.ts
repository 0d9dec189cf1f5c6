import { deepStrictEqual } from 'node:assert'
import { test } from 'tap'
import fc from 'fast-check'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { frameBody, frameComment, frameEvent, frameRetry } from '../lib/protocol/framing'
import { isCursor } from '../lib/protocol/cursor-encoding'
import type { SseEvent } from '../lib/core/events'
import { errors } from '../index'

// What a client gets from a frame, in the order it gets it: the parser reports comments and retry as it reads
// their lines, and an event when its blank line comes.
type Heard = ['event', EventSourceMessage] | ['comment', string] | ['retry', number]

interface Parsed {
  events: EventSourceMessage[]
  comments: string[]
  retries: number[]
  heard: Heard[]
}

function parse (text: string): Parsed {
  const parsed: Parsed = { events: [], comments: [], retries: [], heard: [] }
  const parser = createParser({
    onEvent: (event) => { parsed.events.push(event); parsed.heard.push(['event', event]) },
    onComment: (comment) => { parsed.comments.push(comment); parsed.heard.push(['comment', comment]) },
    onRetry: (retry) => { parsed.retries.push(retry); parsed.heard.push(['retry', retry]) }
  })
  parser.feed(text)
  return parsed
}

const json = JSON.stringify

/** The data a client reads back: every CR, LF or CRLF is a line break, which it joins with LF. */
function normalized (text: string): string {
  return text.replace(/\r\n|\r/g, '\n')
}

test('a string is the data of one message event', async (t) => {
  t.equal(frameEvent('hello', json), 'data: hello\n\n')
  t.same(parse(frameEvent('hello', json)).events, [{ data: 'hello', event: undefined, id: undefined }])
  t.equal(frameEvent({ data: 'hello' }, json), 'data: hello\n\n', 'the same as { data }')
  t.same(parse(frameEvent('', json)).events, [{ data: '', event: undefined, id: undefined }],
    'an empty string is still an event')
})

test('CR, LF and CRLF in data each start a new data: line, and come back as LF', async (t) => {
  const frame = frameEvent({ data: 'a\rb\nc\r\nd' }, json)
  t.equal(frame, 'data: a\ndata: b\ndata: c\ndata: d\n\n')
  t.same(parse(frame).events, [{ data: 'a\nb\nc\nd', event: undefined, id: undefined }])
  t.same(parse(frameEvent('\r\n\r\n', json)).events.map((event) => event.data), ['\n\n'], 'nothing but line breaks')
  t.same(parse(frameEvent('\nleading and trailing\r', json)).events.map((event) => event.data),
    ['\nleading and trailing\n'])
  // A blank line ends an event: written as it is, "\n\n" would cut this one in two.
  const twoParagraphs = parse(frameEvent('one\n\ntwo\r\rthree', json))
  t.same(twoParagraphs.events.map((event) => event.data), ['one\n\ntwo\n\nthree'], 'one event, not three')
  t.same(parse(frameEvent('x\r\ny\n\rz', json)).events.map((event) => event.data), ['x\ny\n\nz'],
    'CRLF is one break; LF then CR is two')
})

test('a value that starts with a space keeps it (an id cannot: it would not come back, see sendableId)', async (t) => {
  const parsed = parse(frameEvent({ id: '7', event: ' spaced', comment: ' aside', data: '  two spaces' }, json))
  t.same(parsed.events, [{ id: '7', event: ' spaced', data: '  two spaces' }])
  t.same(parsed.comments, [' aside'])
  t.same(parse(frameEvent('line\n indented', json)).events[0].data, 'line\n indented', 'on every line')
})

test('an id of 0 or "" is sent, not dropped; an empty id is `id: `, which resets the client\'s last id', async (t) => {
  t.equal(frameEvent({ id: 0, data: 'x' }, json), 'id: 0\ndata: x\n\n')
  t.equal(parse(frameEvent({ id: 0, data: 'x' }, json)).events[0].id, '0')
  t.equal(frameEvent({ id: '', data: 'x' }, json), 'id: \ndata: x\n\n')
  t.equal(parse(frameEvent({ id: '', data: 'x' }, json)).events[0].id, '')
  t.equal(frameEvent({ id: '' }, json), 'id: \n\n', 'alone, to reset the last id without an event')
  t.same(parse(frameEvent({ id: '' }, json)).events, [])
  t.equal(parse(frameEvent({ id: 42, data: 'x' }, json)).events[0].id, '42')
  t.equal(parse(frameEvent({ id: -1.5, data: 'x' }, json)).events[0].id, '-1.5', 'any finite number')
})

test('every field is written, in one frame, and read back', async (t) => {
  const frame = frameEvent({ comment: 'note', id: '7', event: 'tick', retry: 1500, data: { n: 1 } }, json)
  t.equal(frame, 'id: 7\n: note\nevent: tick\nretry: 1500\ndata: {"n":1}\n\n')
  const parsed = parse(frame)
  t.same(parsed.events, [{ id: '7', event: 'tick', data: '{"n":1}' }])
  t.same(parsed.comments, ['note'])
  t.same(parsed.retries, [1500])
  // Text data with one other field: each field still makes its line.
  t.equal(frameEvent({ id: 8, comment: 'note', data: 'text' }, json), 'id: 8\n: note\ndata: text\n\n')
  t.equal(frameEvent({ retry: 10, data: 'text' }, json), 'retry: 10\ndata: text\n\n')
  t.equal(frameEvent({ id: 9, data: 'text' }, json), 'id: 9\ndata: text\n\n')
})

test('fields without data dispatch no event', async (t) => {
  t.equal(frameEvent({ id: '9' }, json), 'id: 9\n\n')
  t.equal(frameEvent({ comment: 'c' }, json), ': c\n\n')
  t.equal(frameEvent({ id: '9', data: undefined }, json), 'id: 9\n\n', 'an undefined field is an absent field')
  const parsed = parse(frameEvent({ event: 'x' }, json) + frameEvent({ retry: 10 }, json) + frameEvent({ id: '9' }, json))
  t.same(parsed.events, [])
  t.same(parsed.retries, [10])
})

test('an object with none of the fields, or with a field of another name, is refused: it is not an event', async (t) => {
  const cases: Array<[string, unknown, ErrorClass, RegExp]> = [
    ['{}', {}, errors.FST_SSE_INVALID_EVENT, /an event must be a string or an object with data, id, event, retry or comment; got \{\}$/],
    ['every field undefined', { data: undefined, id: undefined, event: undefined, retry: undefined, comment: undefined },
      errors.FST_SSE_INVALID_EVENT, /; got \{ data: undefined, id: undefined/],
    ['a Map', new Map([['data', 'x']]), errors.FST_SSE_INVALID_EVENT, /; got Map\(1\)/],
    ['the data given as the event', { title: 'Hello' }, errors.FST_SSE_UNKNOWN_EVENT_FIELD,
      /an event has no field 'title': its fields are data, id, event, retry and comment \(to send an object, give it as the data: \{ data: value \}\)$/],
    ['a field of another name beside data', { data: 'x', name: 'y' }, errors.FST_SSE_UNKNOWN_EVENT_FIELD, /no field 'name'/],
    ['a misspelt field', { data: 'x', retries: 3 }, errors.FST_SSE_UNKNOWN_EVENT_FIELD, /no field 'retries'/],
    ['a field of another name, undefined', { data: 'x', extra: undefined }, errors.FST_SSE_UNKNOWN_EVENT_FIELD, /no field 'extra'/],
    ['a Buffer', Buffer.from('hi'), errors.FST_SSE_UNKNOWN_EVENT_FIELD, /no field '0'/]
  ]
  for (const [what, event, ErrorClass, message] of cases) {
    const error = thrownBy(() => frameEvent(event as never, json))
    t.ok(error instanceof ErrorClass && error instanceof TypeError, `${what}: refused`)
    t.match(error, { name: 'FastifyError', statusCode: 500, message }, what)
  }
  t.ok(String(thrownBy(() => frameEvent({ ['x'.repeat(1000)]: 1 } as never, json))).length < 300,
    'the message names the field, cut short')
  const bare = Object.assign(Object.create(null) as SseEvent, { data: 'no prototype' })
  t.equal(frameEvent(bare, json), 'data: no prototype\n\n', 'an object without a prototype is an event too')
  class Tick implements SseEvent {
    event = 'tick'
    data: number
    constructor (n: number) { this.data = n }
    get label (): string { return `tick ${this.data}` }
  }
  t.equal(frameEvent(new Tick(3), json), 'event: tick\ndata: 3\n\n', 'so is an instance: its getters are not fields')
})

test('a frame without its id line (for a store) is never empty', async (t) => {
  t.same(frameBody({ event: 'tick', data: 'x' }, json), { body: 'event: tick\ndata: x\n\n', data: 'x' })
  t.same(frameBody({}, json), { body: '\n', data: undefined },
    'a blank line, which ends the frame the store puts its id in front of')
  t.same(parse('id: 5\n' + frameBody({ data: 'x' }, json).body).events, [{ id: '5', event: undefined, data: 'x' }])
  t.same(frameBody({ data: { n: 1 } }, json), { body: 'data: {"n":1}\n\n', data: '{"n":1}' }, 'the data as serialized')
})

test('data that is not a string goes through the serializer', async (t) => {
  t.equal(frameEvent({ data: { a: [1, 'two'] } }, json), 'data: {"a":[1,"two"]}\n\n')
  t.equal(frameEvent({ data: null }, json), 'data: null\n\n')
  t.equal(frameEvent({ data: 0 }, json), 'data: 0\n\n')
  t.equal(frameEvent({ data: false }, json), 'data: false\n\n')
  const given: unknown[] = []
  const custom = (value: unknown): string => {
    given.push(value)
    return `<${String((value as { n: number }).n)}>`
  }
  const value = { n: 42 }
  t.equal(frameEvent({ data: value }, custom), 'data: <42>\n\n')
  t.equal(given[0], value, 'the custom serializer is given the value itself')
  const pretty = frameEvent({ data: { a: 1 } }, (data) => JSON.stringify(data, null, 1))
  t.equal(pretty, 'data: {\ndata:  "a": 1\ndata: }\n\n', 'its line breaks are split like any other')
  t.same(parse(pretty).events[0].data, '{\n "a": 1\n}')
  t.equal(frameEvent({ data: 'already text' }, custom), 'data: already text\n\n')
  t.equal(frameEvent({ data: Buffer.from('hi') }, custom), 'data: aGk=\n\n')
  t.equal(given.length, 1, 'strings and bytes never go through the serializer')
})

test('Buffer and Uint8Array data are sent base64, only the bytes they view', async (t) => {
  const text = 'héllo, wörld 🚀'
  const buffer = Buffer.from(text)
  t.equal(frameEvent({ data: buffer }, json), `data: ${buffer.toString('base64')}\n\n`)
  t.equal(Buffer.from(parse(frameEvent({ data: buffer }, json)).events[0].data, 'base64').toString(), text)
  t.equal(frameEvent({ data: new Uint8Array([0xff, 0xfe, 0x00, 0x0a, 0x0d]) }, json), 'data: //4ACg0=\n\n',
    'bytes that would be line breaks as text are not')
  const backing = new Uint8Array([0, 1, 2, 3, 4, 5, 6, 7])
  const view = new Uint8Array(backing.buffer, 2, 3)
  t.equal(frameEvent({ data: view }, json), `data: ${Buffer.from([2, 3, 4]).toString('base64')}\n\n`,
    'a view with a byteOffset into a larger buffer: its own bytes, not the whole buffer')
  const slice = Buffer.from('0123456789').subarray(3, 6)
  t.equal(frameEvent({ data: slice }, json), `data: ${Buffer.from('345').toString('base64')}\n\n`, 'a Buffer slice too')
  t.equal(frameEvent({ data: new Uint8Array(0) }, json), 'data: \n\n')
})

test('UTF-8 text survives in every field but the id, which must be ASCII to come back from every client', async (t) => {
  const text = 'naïve 日本語 中文 한국어 🚀👩‍👩‍👧 e\u0301 \u2028 \u0085 end'
  const parsed = parse(frameEvent({ data: text, event: 'ünï-事件', id: 'id-7', comment: '注释 💬' }, json))
  t.same(parsed.events, [{ data: text, event: 'ünï-事件', id: 'id-7' }])
  t.throws(() => frameEvent({ id: 'ïd-🚀', data: text }, json), { code: 'FST_SSE_INVALID_ID', message: /not ASCII$/ })
  t.same(parsed.comments, ['注释 💬'])
  t.same(parse(frameEvent({ data: { emoji: '🚀', cjk: '日本' } }, json)).events[0].data, '{"emoji":"🚀","cjk":"日本"}')
})

test('comment and retry frames', async (t) => {
  t.equal(frameComment('hi'), ': hi\n\n')
  t.equal(frameComment(''), ': \n\n')
  t.same(parse(frameComment('')).comments, [''])
  const multiline = parse(frameComment('one\ntwo\rthree\r\nfour'))
  t.same(multiline.comments, ['one', 'two', 'three', 'four'], 'each line of a comment is a comment line')
  t.same(multiline.events, [], 'no event forged')
  t.same(parse(frameComment('x\ndata: forged\n\nid: 1')).events, [], 'not even from a line that looks like data')
  t.equal(frameRetry(2000), 'retry: 2000\n\n')
  t.same(parse(frameRetry(0)).retries, [0])
  t.same(parse(frameRetry(Number.MAX_SAFE_INTEGER)).retries, [Number.MAX_SAFE_INTEGER])
})

type ErrorClass = new (...args: never[]) => Error

function thrownBy (fn: () => unknown): unknown {
  try {
    fn()
  } catch (error) {
    return error
  }
  return undefined
}

test('bad ids, event names and retries are refused with a coded error that says why', async (t) => {
  const { FST_SSE_INVALID_ID: badId, FST_SSE_INVALID_EVENT_NAME: badName, FST_SSE_INVALID_RETRY: badRetry } = errors
  const cases: Array<[string, SseEvent, ErrorClass, string, RegExp]> = [
    ['id with LF', { id: '1\nevent: admin', data: 'x' }, badId, 'FST_SSE_INVALID_ID', /got a string with a line feed \(\\n\)$/],
    ['id with CR', { id: '1\rdata: x', data: 'x' }, badId, 'FST_SSE_INVALID_ID', /got a string with a carriage return \(\\r\)$/],
    ['id with CRLF', { id: '1\r\n', data: 'x' }, badId, 'FST_SSE_INVALID_ID', /line feed/],
    ['id with NUL', { id: 'a\0b', data: 'x' }, badId, 'FST_SSE_INVALID_ID', /got a string with a NUL character \(\\0\)$/],
    ['id with a control character', { id: 'a\u0001b', data: 'x' }, badId, 'FST_SSE_INVALID_ID', /got a string with a control character$/],
    ['id with DEL', { id: 'a\u007fb', data: 'x' }, badId, 'FST_SSE_INVALID_ID', /got a string with a control character$/],
    ['id not ASCII', { id: 'é', data: 'x' }, badId, 'FST_SSE_INVALID_ID', /got a string with a character that is not ASCII$/],
    ['id with a space at an end', { id: '7 ', data: 'x' }, badId, 'FST_SSE_INVALID_ID', /got a string with a space or tab at one end$/],
    ['id longer than 256', { id: 'x'.repeat(257), data: 'x' }, badId, 'FST_SSE_INVALID_ID', /got a string of 257 characters$/],
    ['id read as a cursor', { id: '~10', data: 'x' }, badId, 'FST_SSE_INVALID_ID', /got '~10', which reads as a cursor$/],
    ['id NaN', { id: Number.NaN, data: 'x' }, badId, 'FST_SSE_INVALID_ID', /finite number.*got NaN$/],
    ['id Infinity', { id: Infinity, data: 'x' }, badId, 'FST_SSE_INVALID_ID', /got Infinity$/],
    ['id object', { id: {} as never, data: 'x' }, badId, 'FST_SSE_INVALID_ID', /got \{\}$/],
    ['id array', { id: ['x'] as never, data: 'x' }, badId, 'FST_SSE_INVALID_ID', /got \[ 'x' \]$/],
    ['id null', { id: null as never, data: 'x' }, badId, 'FST_SSE_INVALID_ID', /got null$/],
    ['event with LF', { event: 'a\nb', data: 'x' }, badName, 'FST_SSE_INVALID_EVENT_NAME', /got a string with a line feed \(\\n\)$/],
    ['event with CR', { event: 'a\rb', data: 'x' }, badName, 'FST_SSE_INVALID_EVENT_NAME', /got a string with a carriage return \(\\r\)$/],
    ['event number', { event: 5 as never, data: 'x' }, badName, 'FST_SSE_INVALID_EVENT_NAME', /got 5$/],
    ['event null', { event: null as never, data: 'x' }, badName, 'FST_SSE_INVALID_EVENT_NAME', /got null$/],
    ['retry negative', { retry: -1 }, badRetry, 'FST_SSE_INVALID_RETRY', /got -1$/],
    ['retry 1.5', { retry: 1.5 }, badRetry, 'FST_SSE_INVALID_RETRY', /got 1\.5$/],
    ['retry NaN', { retry: Number.NaN }, badRetry, 'FST_SSE_INVALID_RETRY', /got NaN$/],
    ['retry string', { retry: '100' as never }, badRetry, 'FST_SSE_INVALID_RETRY', /got '100'$/],
    ['retry Infinity', { retry: Infinity }, badRetry, 'FST_SSE_INVALID_RETRY', /got Infinity$/],
    ['retry past safe integers', { retry: 2 ** 53 }, badRetry, 'FST_SSE_INVALID_RETRY', /got 9007199254740992$/]
  ]
  for (const [what, event, ErrorClass, code, message] of cases) {
    const error = thrownBy(() => frameEvent(event, json))
    t.ok(error instanceof ErrorClass && error instanceof TypeError, `${what}: a ${code}, a TypeError`)
    t.match(error, { name: 'FastifyError', code, statusCode: 500, message }, what)
  }
  t.notMatch(String(thrownBy(() => frameEvent({ id: 'x'.repeat(100) + '\n' }, json))), 'x'.repeat(50),
    'the message names the character, it does not repeat the value')
  t.notMatch(String(thrownBy(() => frameEvent({ id: 'x'.repeat(1000) }, json))), 'x'.repeat(50), 'nor a long id')
  for (const retry of [-1, 0.5]) {
    const error = thrownBy(() => frameRetry(retry))
    t.ok(error instanceof badRetry, `frameRetry(${retry})`)
    t.match(error, { code: 'FST_SSE_INVALID_RETRY', message: new RegExp(`got ${retry}$`) })
  }
})

test('events that are neither strings nor objects, comments and serialized data that are not strings', async (t) => {
  const cases: Array<[string, () => unknown, ErrorClass, string, RegExp]> = []
  for (const [what, event, got] of [['a number', 42, '42'], ['null', null, 'null'], ['an array', ['a'], "\\[ 'a' \\]"],
    ['undefined', undefined, 'undefined'], ['a boolean', true, 'true']] as const) {
    cases.push([`an event that is ${what}`, () => frameEvent(event as never, json), errors.FST_SSE_INVALID_EVENT,
      'FST_SSE_INVALID_EVENT', new RegExp(`an event must be a string or an object .*; got ${got}$`)])
  }
  for (const [what, comment, got] of [['a number', 3, '3'], ['null', null, 'null'], ['an object', {}, '\\{\\}']] as const) {
    cases.push([`a comment that is ${what}`, () => frameEvent({ comment: comment as never, data: 'x' }, json),
      errors.FST_SSE_INVALID_COMMENT, 'FST_SSE_INVALID_COMMENT', new RegExp(`a comment must be a string, got ${got}$`)])
    cases.push([`frameComment(${what})`, () => frameComment(comment as never),
      errors.FST_SSE_INVALID_COMMENT, 'FST_SSE_INVALID_COMMENT', new RegExp(`a comment must be a string, got ${got}$`)])
  }
  cases.push(
    ['a serializer returning undefined', () => frameEvent({ data: 1 }, () => undefined as never),
      errors.FST_SSE_INVALID_SERIALIZED, 'FST_SSE_INVALID_SERIALIZED', /the serializer must return a string, it returned undefined$/],
    ['a serializer returning a number', () => frameEvent({ data: 1 }, () => 5 as never),
      errors.FST_SSE_INVALID_SERIALIZED, 'FST_SSE_INVALID_SERIALIZED', /it returned 5$/],
    ['JSON.stringify of a function', () => frameEvent({ data: () => {} }, json),
      errors.FST_SSE_INVALID_SERIALIZED, 'FST_SSE_INVALID_SERIALIZED', /it returned undefined$/]
  )
  for (const [what, fn, ErrorClass, code, message] of cases) {
    const error = thrownBy(fn)
    t.ok(error instanceof ErrorClass && error instanceof TypeError, `${what}: a ${code}, a TypeError`)
    t.match(error, { name: 'FastifyError', code, statusCode: 500, message }, what)
  }
})

// Generators of the text a value could hold. `hostile` is made of the very pieces that would forge a field or an
// event if framing let them through; the others cover all of Unicode (lone surrogates included, with `binary`).
const fragments = ['\r', '\n', '\r\n', '\n\n', '\r\r', 'event:', 'event: admin', 'id:', 'id: 666', 'retry:', 'retry: 1',
  'data:', 'data: forged', ':', ': ', ' ', 'a', 'é', '🚀', '\0', '\uFEFF']
const hostile = fc.array(fc.constantFrom(...fragments), { maxLength: 30 }).map((parts) => parts.join(''))
const fieldLike = fc.stringMatching(/^(?:(?:data|id|event|retry)?:? ?[a-z0-9 ]{0,4}(?:\r\n|\r|\n){0,2})*$/)
const anyText = fc.oneof(
  hostile,
  fieldLike,
  fc.string({ unit: 'grapheme', maxLength: 60 }),
  fc.string({ unit: 'binary', maxLength: 60 }),
  fc.string({ unit: fc.constantFrom('\r', '\n', ':', ' ', 'x'), maxLength: 40 })
)

/** Runs a property; fast-check throws with the smallest counterexample if it does not hold. */
function holds<Ts extends [unknown, ...unknown[]]> (t: { pass: (message: string) => void }, what: string,
  property: fc.IProperty<Ts>, numRuns: number): void {
  fc.assert(property, { numRuns })
  t.pass(`${what} (${numRuns} runs)`)
}

test('no data can forge an event, a field or an id (property, checked by eventsource-parser)', async (t) => {
  holds(t, 'a string is exactly one event with exactly its data', fc.property(anyText, (data) => {
    for (const message of [data, { data }]) {
      deepStrictEqual(parse(frameEvent(message, json)).heard,
        [['event', { id: undefined, event: undefined, data: normalized(data) }]])
    }
  }), 400)
  // JSON.stringify's text is written without a search for line breaks: it must never hold one.
  const jsonData = fc.oneof(anyText.map((text) => ({ text })), fc.jsonValue().filter((value) => typeof value !== 'string'))
  holds(t, 'serialized text is too, with an id or without', fc.property(jsonData, fc.option(fc.nat()), (data, id) => {
    const message = id === null ? { data } : { id, data }
    deepStrictEqual(parse(frameEvent(message, json)).heard,
      [['event', { id: id === null ? undefined : String(id), event: undefined, data: json(data) }]])
  }), 300)
})

test('no comment can forge an event or a field (property)', async (t) => {
  holds(t, 'a comment is comment lines only', fc.property(anyText, (comment) => {
    deepStrictEqual(parse(frameComment(comment)).heard, comment.split(/\r\n|\r|\n/).map((line) => ['comment', line]))
  }), 300)
})

/**
 * Whether every client can send the id back exactly as it was sent, in a Last-Event-ID header and in a URL: printable
 * ASCII and tab (fetch-based clients send Latin-1, browsers UTF-8), no space or tab at its ends (HTTP trims them), read
 * back up to 256 characters; and it is not read as a cursor of several channels (the cursor's own grammar).
 */
function sendableId (id: string): boolean {
  return id.length <= 256 && /^[\t\x20-\x7e]*$/.test(id) && !/^[ \t]|[ \t]$/.test(id) && !isCursor(id)
}

test('an id or an event name is sent as it is, or refused if it could not come back / would end its line (property)', async (t) => {
  holds(t, 'ids and names', fc.property(anyText, (value) => {
    if (!sendableId(value)) {
      deepStrictEqual(thrownBy(() => frameEvent({ id: value, data: 'x' }, json)) instanceof errors.FST_SSE_INVALID_ID, true)
    } else {
      deepStrictEqual(parse(frameEvent({ id: value, data: 'x' }, json)).heard,
        [['event', { id: value, event: undefined, data: 'x' }]])
    }
    if (/[\r\n]/.test(value)) {
      deepStrictEqual(thrownBy(() => frameEvent({ event: value, data: 'x' }, json)) instanceof errors.FST_SSE_INVALID_EVENT_NAME,
        true)
    } else {
      // An empty type is the default type, `message`: the parser reports it as no type.
      deepStrictEqual(parse(frameEvent({ event: value, data: 'x' }, json)).heard,
        [['event', { id: undefined, event: value === '' ? undefined : value, data: 'x' }]])
    }
  }), 400)
})

test('retry is sent if it is a non-negative integer, refused otherwise (property)', async (t) => {
  const retries = fc.oneof(fc.integer({ min: -1000, max: 2 ** 40 }), fc.double(), fc.maxSafeNat(), fc.constant(-0))
  holds(t, 'retries', fc.property(retries, (retry) => {
    if (Number.isSafeInteger(retry) && retry >= 0) {
      // -0 is written, and read back, as 0.
      deepStrictEqual(parse(frameRetry(retry)).heard, [['retry', Math.abs(retry)]])
    } else {
      deepStrictEqual(thrownBy(() => frameRetry(retry)) instanceof errors.FST_SSE_INVALID_RETRY, true)
    }
  }), 300)
})

test('many generated events in one stream parse back to the same events, fields and order (property)', async (t) => {
  const safeId = fc.oneof(anyText.filter(sendableId), fc.integer({ min: -10, max: 1e6 }))
  const safeName = anyText.filter((value) => !/[\r\n]/.test(value))
  const event = fc.record({
    data: fc.oneof(anyText, fc.jsonValue()),
    id: fc.option(safeId, { nil: undefined }),
    event: fc.option(safeName, { nil: undefined }),
    retry: fc.option(fc.nat(), { nil: undefined }),
    comment: fc.option(anyText, { nil: undefined })
  }, { requiredKeys: ['data'] })
  const message = fc.oneof({ weight: 4, arbitrary: event }, { weight: 1, arbitrary: anyText })

  holds(t, 'streams of events', fc.property(fc.array(message, { minLength: 1, maxLength: 40 }), (messages) => {
    const expected: Heard[] = []
    for (const sent of messages) {
      const one: SseEvent = typeof sent === 'string' ? { data: sent } : sent
      if (one.comment !== undefined) for (const line of one.comment.split(/\r\n|\r|\n/)) expected.push(['comment', line])
      if (one.retry !== undefined) expected.push(['retry', one.retry])
      const data = typeof one.data === 'string' ? one.data : json(one.data)
      expected.push(['event', {
        id: one.id === undefined ? undefined : String(one.id),
        event: one.event === '' ? undefined : one.event,
        data: normalized(data)
      }])
    }
    deepStrictEqual(parse(messages.map((sent) => frameEvent(sent, json)).join('')).heard, expected)
  }), 300)
})

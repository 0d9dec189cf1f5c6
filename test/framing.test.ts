import { test } from 'tap'
import fc from 'fast-check'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { frameComment, frameEvent, frameRetry } from '../lib/framing'
import type { SseEvent } from '../lib/types'
import { errors } from '../index'

interface Parsed {
  events: EventSourceMessage[]
  comments: string[]
  retries: number[]
}

function parse (text: string): Parsed {
  const parsed: Parsed = { events: [], comments: [], retries: [] }
  const parser = createParser({
    onEvent: (event) => parsed.events.push(event),
    onComment: (comment) => parsed.comments.push(comment),
    onRetry: (retry) => parsed.retries.push(retry)
  })
  parser.feed(text)
  return parsed
}

const json = JSON.stringify

test('a string is the data of one message event', async (t) => {
  t.equal(frameEvent('hello', json), 'data: hello\n\n')
  t.same(parse(frameEvent('hello', json)).events, [{ data: 'hello', event: undefined, id: undefined }])
})

test('CR, LF and CRLF in data each start a new data line, so the client gets the lines back', async (t) => {
  const frame = frameEvent({ data: 'a\rb\nc\r\nd' }, json)
  t.equal(frame, 'data: a\ndata: b\ndata: c\ndata: d\n\n')
  t.same(parse(frame).events.map((event) => event.data), ['a\nb\nc\nd'])
  t.same(parse(frameEvent('ends with a break\n', json)).events.map((event) => event.data), ['ends with a break\n'])
})

test('data that starts with a space keeps it', async (t) => {
  t.same(parse(frameEvent('  two spaces', json)).events[0].data, '  two spaces')
})

test('an id of 0 or "" is sent, not dropped', async (t) => {
  t.equal(frameEvent({ id: 0, data: 'x' }, json), 'id: 0\ndata: x\n\n')
  t.equal(parse(frameEvent({ id: 0, data: 'x' }, json)).events[0].id, '0')
  t.equal(frameEvent({ id: '', data: 'x' }, json), 'id: \ndata: x\n\n')
  t.equal(parse(frameEvent({ id: '', data: 'x' }, json)).events[0].id, '')
})

test('every field is written and parsed back', async (t) => {
  const frame = frameEvent({ comment: 'note', id: '7', event: 'tick', retry: 1500, data: { n: 1 } }, json)
  const parsed = parse(frame)
  t.same(parsed.events, [{ id: '7', event: 'tick', data: '{"n":1}' }])
  t.same(parsed.comments, ['note'])
  t.same(parsed.retries, [1500])
})

test('an object with no field writes nothing; an id alone is still sent', async (t) => {
  t.equal(frameEvent({}, json), '')
  t.equal(frameEvent({ id: '9' }, json), 'id: 9\n\n')
})

test('values that are not strings go through the serializer', async (t) => {
  t.equal(frameEvent({ data: [1, 'two'] }, json), 'data: [1,"two"]\n\n')
  t.equal(frameEvent({ data: null }, json), 'data: null\n\n')
  t.equal(frameEvent({ data: 42 }, (value) => `<${String(value)}>`), 'data: <42>\n\n')
  const multiline = frameEvent({ data: { a: 1 } }, (value) => JSON.stringify(value, null, 1))
  t.same(parse(multiline).events[0].data, '{\n "a": 1\n}')
})

test('bytes are sent base64, including a view into a larger buffer', async (t) => {
  t.equal(frameEvent({ data: Buffer.from('héllo') }, json), `data: ${Buffer.from('héllo').toString('base64')}\n\n`)
  const backing = new Uint8Array([0, 1, 2, 3, 4, 5])
  const view = new Uint8Array(backing.buffer, 2, 3)
  t.equal(frameEvent({ data: view }, json), `data: ${Buffer.from([2, 3, 4]).toString('base64')}\n\n`)
})

test('UTF-8 text survives', async (t) => {
  const text = 'naïve 日本語 🚀 \u2028 end'
  t.equal(parse(frameEvent({ data: text, event: 'ünï', id: 'ïd-🚀' }, json)).events[0].data, text)
  t.same(parse(frameEvent({ data: 'x', event: 'ünï', id: 'ïd-🚀' }, json)).events[0],
    { data: 'x', event: 'ünï', id: 'ïd-🚀' })
})

test('comments and retry frames', async (t) => {
  t.equal(frameComment('hi'), ': hi\n\n')
  t.same(parse(frameComment('one\ntwo\rthree')).comments, ['one', 'two', 'three'])
  t.same(parse(frameComment('one\ntwo')).events, [], 'a multi-line comment forges no event')
  t.equal(frameRetry(2000), 'retry: 2000\n\n')
  t.same(parse(frameRetry(0)).retries, [0])
})

test('bad fields are refused with a coded error that says why', async (t) => {
  const cases: Array<[unknown, new (...args: never[]) => Error, string, RegExp]> = [
    [{ id: 'a\nb' }, errors.FST_SSE_INVALID_ID, 'FST_SSE_INVALID_ID', /line feed/],
    [{ id: 'a\rb' }, errors.FST_SSE_INVALID_ID, 'FST_SSE_INVALID_ID', /carriage return/],
    [{ id: 'a\0b' }, errors.FST_SSE_INVALID_ID, 'FST_SSE_INVALID_ID', /NUL/],
    [{ id: Number.NaN }, errors.FST_SSE_INVALID_ID, 'FST_SSE_INVALID_ID', /finite/],
    [{ id: {} }, errors.FST_SSE_INVALID_ID, 'FST_SSE_INVALID_ID', /object/],
    [{ event: 'a\nb' }, errors.FST_SSE_INVALID_EVENT_NAME, 'FST_SSE_INVALID_EVENT_NAME', /line feed/],
    [{ event: 'a\rb' }, errors.FST_SSE_INVALID_EVENT_NAME, 'FST_SSE_INVALID_EVENT_NAME', /carriage return/],
    [{ event: 5 }, errors.FST_SSE_INVALID_EVENT_NAME, 'FST_SSE_INVALID_EVENT_NAME', /number/],
    [{ event: null }, errors.FST_SSE_INVALID_EVENT_NAME, 'FST_SSE_INVALID_EVENT_NAME', /null/],
    [{ id: ['x'] }, errors.FST_SSE_INVALID_ID, 'FST_SSE_INVALID_ID', /array/],
    [{ retry: -1 }, errors.FST_SSE_INVALID_RETRY, 'FST_SSE_INVALID_RETRY', /-1/],
    [{ retry: 1.5 }, errors.FST_SSE_INVALID_RETRY, 'FST_SSE_INVALID_RETRY', /1\.5/],
    [{ retry: '100' }, errors.FST_SSE_INVALID_RETRY, 'FST_SSE_INVALID_RETRY', /'100'/],
    [{ retry: Infinity }, errors.FST_SSE_INVALID_RETRY, 'FST_SSE_INVALID_RETRY', /Infinity/],
    [{ comment: 3 }, errors.FST_SSE_INVALID_COMMENT, 'FST_SSE_INVALID_COMMENT', /3/],
    [42, errors.FST_SSE_INVALID_EVENT, 'FST_SSE_INVALID_EVENT', /42/],
    [null, errors.FST_SSE_INVALID_EVENT, 'FST_SSE_INVALID_EVENT', /null/],
    [['a'], errors.FST_SSE_INVALID_EVENT, 'FST_SSE_INVALID_EVENT', /\[ 'a' \]/]
  ]
  for (const [event, ErrorClass, code, message] of cases) {
    const error = thrownBy(() => frameEvent(event as SseEvent, json))
    t.ok(error instanceof ErrorClass && error instanceof TypeError, `${code} for ${String(JSON.stringify(event))}`)
    t.equal((error as { code?: string }).code, code)
    t.match((error as Error).message, message)
  }
  t.throws(() => frameEvent({ data: 1 }, () => undefined as unknown as string),
    { code: 'FST_SSE_INVALID_SERIALIZED' })
})

function thrownBy (fn: () => unknown): unknown {
  try {
    fn()
  } catch (error) {
    return error
  }
  return undefined
}

// Strings built from the pieces an attacker would use to forge fields and events.
const hostile = fc.array(fc.constantFrom('\r', '\n', '\r\n', 'event: x', 'id: 666', 'retry: 1', 'data: y', ':', ' ', 'a',
  '\n\n', 'é', '🚀'), { maxLength: 30 }).map((parts) => parts.join(''))
const anyText = fc.oneof(hostile, fc.string({ unit: 'grapheme', maxLength: 60 }), fc.string({ unit: 'binary', maxLength: 60 }))

function normalized (text: string): string {
  return text.replace(/\r\n|\r/g, '\n')
}

test('no data can forge an event, a field or an id (property, checked by eventsource-parser)', async (t) => {
  fc.assert(fc.property(anyText, (data) => {
    const parsed = parse(frameEvent({ data }, json))
    return parsed.events.length === 1 && parsed.events[0].data === normalized(data) &&
      parsed.events[0].id === undefined && parsed.events[0].event === undefined && parsed.retries.length === 0
  }), { numRuns: 500 })
  fc.assert(fc.property(anyText, (comment) => {
    const parsed = parse(frameEvent({ comment, data: 'x' }, json))
    return parsed.events.length === 1 && parsed.events[0].data === 'x' && parsed.events[0].id === undefined &&
      parsed.retries.length === 0
  }), { numRuns: 300 })
  t.pass('500 data values and 300 comments each parsed to exactly the event that was sent')
})

test('many generated events in one stream parse back to the same events, in order (property)', async (t) => {
  const safeField = fc.string({ unit: 'grapheme', maxLength: 20 }).filter((value) => !/[\r\n\0]/.test(value))
  const event = fc.record({
    data: anyText,
    id: fc.option(safeField, { nil: undefined }),
    event: fc.option(safeField.filter((value) => value !== ''), { nil: undefined })
  })
  fc.assert(fc.property(fc.array(event, { minLength: 1, maxLength: 40 }), (events) => {
    const parsed = parse(events.map((one) => frameEvent(one, json)).join(''))
    if (parsed.events.length !== events.length) return false
    let lastId: string | undefined
    return events.every((sent, index) => {
      const got = parsed.events[index]
      if (sent.id !== undefined) lastId = sent.id
      return got.data === normalized(sent.data) && got.event === sent.event &&
        got.id === (sent.id === undefined ? undefined : lastId)
    })
  }), { numRuns: 300 })
  t.pass('300 generated streams parsed back event for event')
})

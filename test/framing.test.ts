import { test } from 'tap'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { frameEvent } from '../lib/framing'

function parse (text: string): EventSourceMessage[] {
  const events: EventSourceMessage[] = []
  const parser = createParser({ onEvent: (event) => events.push(event) })
  parser.feed(text)
  return events
}

test('a string is one message event', async (t) => {
  t.same(parse(frameEvent('hello', JSON.stringify)), [{ data: 'hello', event: undefined, id: undefined }])
})

import { test } from 'tap'
import { entryEvent, entryFields } from '../lib/stores/redis/entry'

// How an event is kept in a Redis stream entry, without Redis: the store's own suites run it against a real one.
test('an entry keeps the frame once, and the snapshot apart only when the frame cannot give it back', async (t) => {
  const cases: Array<{ body: string, snapshot: string, stored: string[] }> = [
    { body: '\n', snapshot: '{}', stored: ['j'] },
    { body: 'data: {"n":1}\n\n', snapshot: '{"data":{"n":1}}', stored: ['j'] },
    { body: 'event: tick\ndata: hello\n\n', snapshot: '{"event":"tick","data":"hello"}', stored: ['t'] },
    { body: ': a\n: b\nretry: 10\ndata: x\ndata: y\n\n', snapshot: '{"retry":10,"comment":"a\\nb","data":"x\\ny"}', stored: ['t'] },
    // An event of an id alone (`publish({ id })`): a frame of no field.
    { body: '\n', snapshot: '{}', stored: ['j'] },
    // A frame of a store user's own making, with a line an event's fields never make: kept as given.
    { body: 'id: 7\ndata: seven\n\n', snapshot: '{"data":"seven"}', stored: ['b', 'e'] },
    // A snapshot the frame does not say (a serializer of the app's own): kept as given.
    { body: 'data: <n>1</n>\n\n', snapshot: '{"data":{"n":1}}', stored: ['b', 'e'] }
  ]
  for (const { body, snapshot, stored } of cases) {
    const fields = entryFields({ id: undefined, body, snapshot })
    t.same(fields.filter((_field, i) => i % 2 === 0), stored, body)
    const event = entryEvent('1700000000000-0', fields)
    t.equal(event.frame, 'id: 1700000000000-0\n' + body, 'the frame, with its id')
    t.same(event.event, { id: '1700000000000-0', ...JSON.parse(snapshot) }, 'the snapshot, with its id')
  }
  const own = entryEvent('1700000000000-1', ['i', 'mine', ...entryFields({ id: 'mine', body: 'data: 1\n\n', snapshot: '{"data":1}' })])
  t.equal(own.id, 'mine')
  t.equal(own.position, '1700000000000-1')
})

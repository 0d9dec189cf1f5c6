import { test } from 'tap'
import { MemoryStore } from '../index'

const event = { id: undefined, body: 'data: x\n\n', snapshot: '{"data":"x"}' }

test('memory stores made one after the other, in the same millisecond, never give their first events one id', async (t) => {
  const firsts = Array.from({ length: 100 }, () => new MemoryStore().append('news', event).id)
  t.equal(new Set(firsts).size, firsts.length, '100 stores, 100 first ids')
  t.ok(firsts.every((id, i) => i === 0 || Number(id) > Number(firsts[i - 1])), 'each after the one made before it')
})

test('a memory store\'s ids start at the time it was made, in microseconds', async (t) => {
  const before = Date.now() * 1000
  const id = Number(new MemoryStore().append('news', event).id)
  const after = (Date.now() + 1) * 1000
  t.ok(id >= before && id <= after + 1000, `${id} is a time in microseconds`)
})

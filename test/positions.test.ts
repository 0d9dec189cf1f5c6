import { test } from 'tap'
import fc from 'fast-check'
import { comparePositions } from '../lib/core/position'

// Positions are compared digit by digit, without reading them as numbers (Number() is slow past 15 digits): the order
// must be the numbers', whatever their lengths, with or without a second part, even written with leading zeros.

const part = fc.oneof(
  fc.nat({ max: 1000 }),
  fc.integer({ min: 1e15, max: Number.MAX_SAFE_INTEGER }),
  fc.nat({ max: Number.MAX_SAFE_INTEGER })
)
const written = (value: number, zeros: number): string => '0'.repeat(zeros) + String(value)
const position = fc.record({
  major: part,
  minor: fc.option(part, { nil: undefined }),
  zeros: fc.constantFrom(0, 0, 0, 1, 2)
}).map(({ major, minor, zeros }) => ({
  text: written(major, zeros) + (minor === undefined ? '' : '-' + written(minor, zeros)),
  value: [major, minor ?? 0] as const
}))

test('positions compare as their numbers: first parts, then second parts (none is 0)', async (t) => {
  fc.assert(fc.property(position, position, (a, b) => {
    const expected = Math.sign(a.value[0] - b.value[0]) || Math.sign(a.value[1] - b.value[1])
    return Math.sign(comparePositions(a.text, b.text)) === expected &&
      Math.sign(comparePositions(b.text, a.text)) === -expected
  }), { numRuns: 5000 })
  t.equal(comparePositions('5', '5-0'), 0, '5 is 5-0')
  t.equal(comparePositions('5-0', '5'), 0, 'and 5-0 is 5')
  t.ok(comparePositions('5', '5-1') < 0, 'no second part is 0')
  t.equal(comparePositions('5', '05-00'), 0, 'nor beside one written with leading zeros')
  t.ok(comparePositions('05-01', '5') > 0, 'which is read as its number')
  t.ok(comparePositions('999999999999999', '1796666401358000') < 0, 'a longer number is larger')
  t.ok(comparePositions('1796666401358009', '1796666401358010') < 0, 'digit by digit')
})

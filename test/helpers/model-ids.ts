import fc from 'fast-check'
import { isCursor } from '../../lib/protocol/cursor-encoding'

// Ids for the model-based test of delivery: the publisher's own, drawn from the whole of UTF-16 (lone surrogates,
// control characters, spaces at an end, text that reads as a cursor), and the ids a client comes back with when
// something in between mangled them (a cut cursor, a plain id, an entry given twice).

/**
 * Whether every client sends `id` back as it is, in Last-Event-ID and in the query fallback, which is what the plugin
 * accepts as an id: printable ASCII and tab, at most 256 characters, no space or tab at an end, not a cursor.
 */
export function sendsBack (id: string): boolean {
  return id.length > 0 && id.length <= 256 && /^[\t\x20-\x7e]*$/.test(id) && !/^[ \t]|[ \t]$/.test(id) && !isCursor(id)
}

const anyCodeUnit = fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code))
const printable = fc.integer({ min: 0x20, max: 0x7e }).map((code) => String.fromCharCode(code))

/** An id of the publisher's own: mostly printable ASCII (a cursor's mark now and then), else any UTF-16. */
export const anyId = fc.oneof(
  { weight: 3, arbitrary: fc.string({ unit: printable, minLength: 1, maxLength: 8 }) },
  { weight: 1, arbitrary: fc.string({ unit: anyCodeUnit, minLength: 1, maxLength: 4 }) },
  { weight: 1, arbitrary: fc.constantFrom('~0', '~00', ' x', 'x\t', '~00.abcdef', 'x\ud800y', 'ä', '\udc00') })

/** How the id a client comes back with was mangled on its way. */
export type Mangle = 'as it was' | 'cut' | 'plain' | 'doubled'

/**
 * `id` mangled: cut short (`at`: where), replaced by a plain id (`plain`: a publish() id, as from when the route
 * streamed one channel), or with its first entry given twice. Undefined stays undefined.
 */
export function mangled (id: string | undefined, mangle: Mangle, at: number, plain: string | undefined): string | undefined {
  if (id === undefined || mangle === 'as it was') return id
  if (mangle === 'plain') return plain ?? 'never-sent'
  if (mangle === 'cut') return id.length < 2 ? id : id.slice(0, 1 + (at % (id.length - 1)))
  const entries = id.split('.')
  return entries.length < 2 ? id : [entries[0], entries[1], ...entries.slice(1)].join('.')
}

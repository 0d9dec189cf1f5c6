// A position orders the events of one channel: the store gives it, and a subscription writes exactly the events
// after the position of the last one it wrote. Every store writes positions as `<n>` or `<n>-<n>` (a counter, or a
// Redis stream entry id), so that positions of any store compare without asking it.

const POSITION = /^(0|[1-9]\d{0,15})(-(0|[1-9]\d{0,15}))?$/

/** Whether `text` is a position as stores write them, with parts a double holds exactly. */
export function isPosition (text: string): boolean {
  if (!POSITION.test(text)) return false
  const dash = text.indexOf('-')
  return dash === -1
    ? Number.isSafeInteger(Number(text))
    : Number.isSafeInteger(Number(text.slice(0, dash))) && Number.isSafeInteger(Number(text.slice(dash + 1)))
}

/** Negative when `a` comes before `b`, 0 when they are the same, positive after. `5` is `5-0`. */
export function comparePositions (a: string, b: string): number {
  if (a === b) return 0
  const dashA = a.indexOf('-')
  const dashB = b.indexOf('-')
  const endA = dashA === -1 ? a.length : dashA
  const endB = dashB === -1 ? b.length : dashB
  const major = compareParts(a, 0, endA, b, 0, endB)
  return major !== 0 ? major : compareParts(a, endA + 1, a.length, b, endB + 1, b.length)
}

/**
 * Two whole numbers written in decimal, `a` from `startA` to `endA` (none: 0), compared without reading them as
 * numbers: Number() takes a slow path past 15 digits, and a memory store's positions have 16. Written without leading
 * zeros, the longer is the larger, and two of a length compare digit by digit; one with a leading zero (no store
 * writes one) is read as a number.
 */
function compareParts (a: string, startA: number, endA: number, b: string, startB: number, endB: number): number {
  const lengthA = Math.max(endA - startA, 0)
  const lengthB = Math.max(endB - startB, 0)
  if ((lengthA > 1 && a.charCodeAt(startA) === 48) || (lengthB > 1 && b.charCodeAt(startB) === 48)) {
    return Number(a.slice(startA, endA) || '0') - Number(b.slice(startB, endB) || '0')
  }
  if (lengthA !== lengthB) {
    // An empty part is 0, as one digit is.
    if (lengthA + lengthB === 1) return lengthA === 0 ? -Number(b[startB] !== '0') : Number(a[startA] !== '0')
    return lengthA - lengthB
  }
  for (let i = 0; i < lengthA; i++) {
    const difference = a.charCodeAt(startA + i) - b.charCodeAt(startB + i)
    if (difference !== 0) return difference
  }
  return 0
}

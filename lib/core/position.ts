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
  const majorA = Number(dashA === -1 ? a : a.slice(0, dashA))
  const majorB = Number(dashB === -1 ? b : b.slice(0, dashB))
  if (majorA !== majorB) return majorA - majorB
  return (dashA === -1 ? 0 : Number(a.slice(dashA + 1))) - (dashB === -1 ? 0 : Number(b.slice(dashB + 1)))
}

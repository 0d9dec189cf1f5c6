// Turns of the event loop, counted while streams write. Bytes written in this turn or the one before may not have had
// a chance to reach the client yet: Node hands them to the socket from an immediate (HTTP/2), whose place among the
// app's own immediates varies. Whether a client is behind is judged by what it was given before that.
//
// One count for the process, not one per plugin instance: the event loop is the process's, and every app in it
// turns with it. A count per app would count the same turns, with one more immediate a turn for each.

let turn = 0
let turnsToCount = 0

/** The turn now, counting from this one on for two more turns. */
export function currentTurn (): number {
  if (turnsToCount === 0) setImmediate(endTurn)
  turnsToCount = 2
  return turn
}

function endTurn (): void {
  turn++
  if (--turnsToCount > 0) setImmediate(endTurn)
}

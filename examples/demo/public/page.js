/* global document, EventSource */
'use strict'

// The page's state lives in the DOM: each ticker card shows what its stream did, and the counts a person
// (or the browser test) checks: ids must follow each other, last + 1, across reconnects.
// Two pages run it: one EventSource per ticker and one for the chat (index.html), or one EventSource for all of
// them (one.html, `data-feed="one"`), whose events say their ticker and number in the data.

const { httpVersion, symbols, retry, feed } = document.body.dataset
const overHttp2 = httpVersion === '2.0'
const oneStream = feed === 'one'
const STATES = ['connecting', 'open', 'closed'] // EventSource.readyState 0, 1, 2
let chat
// A drop under way: how many streams the server dropped, and how many times each ticker must have opened
// for all of them to be back.
let drop

const tickers = symbols.split(' ').map(addCard)
if (oneStream) {
  openFeed()
} else {
  openChat() // first: over HTTP/1.1 it then holds one of the six connections, and messages still arrive
  for (const ticker of tickers) openTicker(ticker)
}
setUpChatForm()
update()

function addCard (symbol) {
  const card = document.getElementById('ticker-card').content.firstElementChild.cloneNode(true)
  card.dataset.symbol = symbol
  card.querySelector('.symbol').textContent = symbol
  document.getElementById('board').append(card)
  const field = (name) => card.querySelector(`.${name}`)
  return {
    symbol,
    source: undefined,
    firstId: undefined,
    lastId: undefined,
    price: undefined,
    counts: { events: 0, gaps: 0, dups: 0, reconnects: 0, opens: 0 },
    fields: {
      state: field('state'),
      price: field('price'),
      lastId: field('last-id'),
      firstId: field('first-id'),
      events: field('events'),
      gaps: field('gaps'),
      dups: field('dups'),
      reconnects: field('reconnects')
    }
  }
}

function openTicker (ticker) {
  const source = new EventSource(`/ticker/${encodeURIComponent(ticker.symbol)}`)
  ticker.source = source
  source.addEventListener('open', () => opened(ticker))
  // The browser reconnects by itself after `retry` ms, unless the server answered with an error.
  source.addEventListener('error', update)
  source.addEventListener('tick', (event) => receive(ticker, Number(event.lastEventId), JSON.parse(event.data).price))
  source.addEventListener('missed', () => startOver(ticker))
}

// Every ticker's channel and the chat's on one stream: its ids are the server's cursor of all of them, so each
// ticker's own number comes in the data.
function openFeed () {
  const source = new EventSource('/feed')
  chat = source
  for (const ticker of tickers) ticker.source = source
  source.addEventListener('open', () => { for (const ticker of tickers) opened(ticker) })
  source.addEventListener('error', update)
  source.addEventListener('tick', (event) => {
    const { symbol, n, price } = JSON.parse(event.data)
    receive(tickers.find((ticker) => ticker.symbol === symbol), n, price)
  })
  // Says which channel could not be resumed; the chat's messages simply follow.
  source.addEventListener('missed', (event) => {
    const ticker = tickers.find((one) => `ticker:${one.symbol}` === JSON.parse(event.data).channel)
    if (ticker !== undefined) startOver(ticker)
  })
  listenToChat(source)
}

function opened (ticker) {
  ticker.counts.opens++
  if (ticker.counts.opens > 1) ticker.counts.reconnects++
  update()
}

// The server could not resume (it restarted, or we were away too long): count anew from here.
function startOver (ticker) {
  ticker.firstId = undefined
  ticker.lastId = undefined
  ticker.counts.events = 0
  ticker.counts.gaps = 0
  ticker.counts.dups = 0
}

function receive (ticker, id, price) {
  const { counts } = ticker
  if (ticker.lastId !== undefined) {
    if (id <= ticker.lastId) counts.dups++
    else if (id > ticker.lastId + 1) counts.gaps += id - ticker.lastId - 1
  }
  counts.events++
  ticker.firstId ??= id
  ticker.lastId = Math.max(id, ticker.lastId ?? id)
  const { fields } = ticker
  fields.price.classList.toggle('up', ticker.price !== undefined && price > ticker.price)
  fields.price.classList.toggle('down', ticker.price !== undefined && price < ticker.price)
  ticker.price = price
  fields.price.textContent = price.toFixed(2)
  fields.lastId.textContent = String(ticker.lastId)
  fields.firstId.textContent = String(ticker.firstId)
  for (const name of ['events', 'gaps', 'dups']) fields[name].textContent = String(counts[name])
  fields.gaps.classList.toggle('bad', counts.gaps > 0)
  fields.dups.classList.toggle('bad', counts.dups > 0)
}

function showState (element, source) {
  const state = STATES[source.readyState]
  if (element.dataset.state === state) return
  element.dataset.state = state
  element.textContent = state
}

function update () {
  for (const ticker of tickers) {
    showState(ticker.fields.state, ticker.source)
    ticker.fields.reconnects.textContent = String(ticker.counts.reconnects)
  }
  if (chat !== undefined) showState(document.getElementById('chat-state'), chat)
  const open = openTickers()
  document.getElementById('summary').textContent = oneStream
    ? `${open} of ${tickers.length} tickers and the chat live, on one stream.`
    : `${open} of ${tickers.length} ticker streams open${overHttp2 ? ', all on one connection' : ''}.`
  if (!overHttp2) explainHttp1()
  if (drop?.dropped !== undefined && tickers.every((ticker) => ticker.counts.opens >= drop.opens.get(ticker))) {
    document.getElementById('drop-status').textContent = oneStream
      ? `The server dropped ${drop.dropped} streams; this page's one stream reconnected and resumed all ${tickers.length} tickers and the chat after its cursor.`
      : `The server dropped ${drop.dropped} streams; all ${tickers.length} reconnected and resumed after their last event id.`
    drop = undefined
  }
}

function openTickers () {
  return tickers.filter((ticker) => ticker.source.readyState === EventSource.OPEN).length
}

function openChat () {
  chat = new EventSource('/chat')
  chat.addEventListener('open', update)
  chat.addEventListener('error', update)
  listenToChat(chat)
}

function listenToChat (source) {
  source.addEventListener('chat', (event) => {
    const { text, time } = JSON.parse(event.data)
    const item = document.createElement('li')
    const when = document.createElement('time')
    when.dateTime = new Date(time).toISOString()
    when.textContent = new Date(time).toLocaleTimeString()
    const body = document.createElement('span')
    body.textContent = text
    item.append(when, ' ', body)
    const list = document.getElementById('messages')
    list.prepend(item)
    while (list.children.length > 50) list.lastElementChild.remove()
  })
}

function setUpChatForm () {
  const form = document.getElementById('chat-form')
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    const input = form.elements.text
    const response = await post('/chat', { text: input.value }, document.getElementById('chat-status'))
    if (response.ok) input.value = ''
  })
}

// Over HTTP/1.1 the page's streams hold every connection the browser keeps for this origin: a link to another page
// of it would wait behind them for good. Following a link, the page lets go of its streams first.
document.addEventListener('click', (event) => {
  const plain = event.button === 0 && !event.ctrlKey && !event.metaKey && !event.shiftKey && !event.altKey
  if (!plain || event.target.closest('a[href]') === null) return
  chat.close()
  for (const ticker of tickers) ticker.source.close()
})

document.getElementById('drop').addEventListener('click', async () => {
  const status = document.getElementById('drop-status')
  status.textContent = 'Dropping…'
  drop = { dropped: undefined, opens: new Map(tickers.map((ticker) => [ticker, ticker.counts.opens + 1])) }
  const response = await post('/drop', undefined, status)
  if (!response.ok) return
  drop.dropped = (await response.json()).dropped
  status.textContent = `The server dropped ${drop.dropped} streams; they reconnect in ${Number(retry) / 1000} s and resume.`
  update()
})

async function post (path, body, status) {
  try {
    const response = await fetch(path, {
      method: 'POST',
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
    status.textContent = response.ok ? '' : `${path}: the server answered ${response.status}`
    return response
  } catch (error) {
    status.textContent = `${path}: ${error.message}`
    return { ok: false }
  }
}

// Over HTTP/1.1 each open EventSource keeps one of the browser's 6 connections to this origin for good:
// the other streams wait, and so would any other request. Say so, and turn off what would only hang. (The page of
// one stream holds one connection: it says so, and everything works.)
function explainHttp1 () {
  const banner = document.getElementById('banner')
  if (oneStream) {
    banner.hidden = false
    banner.replaceChildren(
      strong('HTTP/1.1, and every ticker is live: '),
      `${openTickers()} of ${tickers.length} tickers and the chat share one EventSource, so they hold one of the ` +
      'browser\'s six connections to this origin, and publishing and dropping have the others. ',
      link(document.getElementById('per-ticker-link').href, 'The page of one stream per ticker'),
      ' stalls here.'
    )
    return
  }
  const open = openTickers()
  const chatOpen = chat.readyState === EventSource.OPEN
  banner.hidden = false
  banner.replaceChildren(
    strong('HTTP/1.1: the browser holds at most 6 connections to this origin, and each open stream keeps one. '),
    `${open} of ${tickers.length} ticker streams are open${chatOpen ? ' (the chat stream holds another connection)' : ''}; ` +
    `the other ${tickers.length - open} wait for a free connection, and none frees while streams are open ` +
    '(the limit counts every tab of this origin). ' +
    'Publishing and dropping would wait too, so they are off here. ',
    link(document.getElementById('http2-link').href, 'Open this page over HTTP/2'),
    ' to see every stream open on one connection, or ',
    link(document.getElementById('one-stream-link').href, 'the page of one stream'),
    ' for all twelve tickers and the chat on one EventSource, here over HTTP/1.1.'
  )
  document.getElementById('drop').disabled = true
  document.querySelector('#chat-form button').disabled = true
  document.querySelector('#chat-form input').disabled = true
}

function strong (text) {
  const element = document.createElement('strong')
  element.textContent = text
  return element
}

function link (href, text) {
  const element = document.createElement('a')
  element.href = href
  element.textContent = text
  return element
}

'use strict'

const { writeFileSync, mkdirSync } = require('node:fs')
const { join } = require('node:path')
const os = require('node:os')

const RESULTS = join(__dirname, 'results')

function versionOf (name) {
  try {
    return require(`${name}/package.json`).version
  } catch {
    return '?'
  }
}

function machine () {
  const cpus = os.cpus()
  return {
    cpu: `${cpus[0]?.model ?? 'unknown'} (${cpus.length} cores)`,
    node: process.version,
    date: new Date().toISOString().slice(0, 10),
    versions: {
      'fastify-sse-h2': require('../package.json').version,
      fastify: versionOf('fastify'),
      '@fastify/sse': versionOf('@fastify/sse'),
      'fastify-sse-v2': versionOf('fastify-sse-v2'),
      'better-sse': versionOf('better-sse')
    }
  }
}

function format (value) {
  if (value === undefined) return 'n/a'
  if (value >= 1000) return Math.round(value).toLocaleString('en-US')
  return value.toFixed(value >= 10 ? 1 : 2)
}

function cellText (cell) {
  if (cell === undefined) return 'n/a'
  if (cell.median === undefined) return `failed: ${cell.errors[0]}`
  const ratio = cell.ratio === undefined ? '' : ` (${cell.ratio.toFixed(2)}x)`
  return `${format(cell.median)}${ratio}`
}

function table ({ results, scenarios, targets }) {
  const rows = [['scenario', 'unit', ...targets]]
  for (const [name, cells] of Object.entries(results)) {
    rows.push([name, scenarios[name].unit, ...targets.map((target) => cellText(cells[target]))])
    if (name === 'idle') {
      rows.push(['idle (heap)', 'bytes/stream', ...targets.map((target) => format(cells[target]?.heap))])
    }
    if (name === 'churn') {
      rows.push(['churn: heap after', 'bytes', ...targets.map((target) => format(cells[target]?.heapAfter))])
    }
  }
  return rows
}

function markdown (rows) {
  const [head, ...body] = rows
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...body.map((row) => `| ${row.join(' | ')} |`)].join('\n')
}

function terminal (rows) {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => String(row[column]).length)))
  return rows.map((row) => row.map((text, column) => String(text).padEnd(widths[column])).join('  ')).join('\n')
}

const COLORS = { raw: '#888888', 'fastify-sse-h2': '#1f77b4', '@fastify/sse': '#ff7f0e', 'fastify-sse-v2': '#2ca02c', 'better-sse': '#d62728' }

/** A bar chart of the ratios to raw node:http2, one group per scenario; written by hand, no library. */
function svg ({ results, scenarios, targets }) {
  const groups = Object.keys(results)
  const barWidth = 22
  const groupWidth = targets.length * barWidth + 30
  const height = 300
  const top = 40
  const bottom = 240
  const max = Math.max(1.5, ...groups.flatMap((name) => targets.map((target) => results[name][target]?.ratio ?? 0)))
  const y = (ratio) => bottom - (ratio / max) * (bottom - top)
  const width = 60 + groups.length * groupWidth + 160
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    '<text x="10" y="20" font-size="13">Ratio to a hand-written node:http2 server (raw = 1.0); for idle and heartbeat, lower is better</text>',
    `<line x1="50" y1="${y(1)}" x2="${width - 160}" y2="${y(1)}" stroke="#888" stroke-dasharray="4"/>`,
    `<text x="20" y="${y(1) + 4}">1.0x</text>`]
  groups.forEach((name, g) => {
    const x0 = 60 + g * groupWidth
    targets.forEach((target, t) => {
      const ratio = results[name][target]?.ratio
      if (ratio === undefined) return
      const x = x0 + t * barWidth
      parts.push(`<rect x="${x}" y="${y(ratio)}" width="${barWidth - 4}" height="${bottom - y(ratio)}" fill="${COLORS[target] ?? '#555'}"><title>${target}: ${ratio.toFixed(2)}x</title></rect>`)
      parts.push(`<text x="${x}" y="${y(ratio) - 3}" font-size="9">${ratio.toFixed(1)}</text>`)
    })
    parts.push(`<text x="${x0}" y="${bottom + 16}">${name}</text>`)
    parts.push(`<text x="${x0}" y="${bottom + 30}" fill="#666">${scenarios[name].higherIsBetter ? 'higher is better' : 'lower is better'}</text>`)
  })
  targets.forEach((target, t) => {
    const yy = top + t * 18
    parts.push(`<rect x="${width - 150}" y="${yy - 10}" width="12" height="12" fill="${COLORS[target] ?? '#555'}"/><text x="${width - 132}" y="${yy}">${target}</text>`)
  })
  parts.push('</svg>')
  return parts.join('\n')
}

function writeResults (run) {
  const rows = table(run)
  const about = machine()
  console.log(`\n${terminal(rows)}\n`)
  mkdirSync(RESULTS, { recursive: true })
  const header = [`Machine: ${about.cpu}, Node.js ${about.node}, ${about.date}.`,
    `Versions: ${Object.entries(about.versions).map(([name, version]) => `${name} ${version}`).join(', ')}.`,
    `Each figure is the median of ${run.runs} run${run.runs === 1 ? '' : 's'}${run.quick ? ' (quick, smaller sizes)' : ''}; in brackets, its ratio to raw node:http2 in the same run.`,
    '', ...Object.entries(run.scenarios).filter(([name]) => run.results[name]).map(([name, scenario]) => `- **${name}**: ${scenario.what}`)].join('\n')
  writeFileSync(join(RESULTS, 'latest.md'), `${header}\n\n${markdown(rows)}\n`)
  writeFileSync(join(RESULTS, 'latest.svg'), svg(run))
  writeFileSync(join(RESULTS, 'latest.json'), JSON.stringify({ machine: about, ...run }, null, 2))
  console.log(`written: ${join('bench', 'results', 'latest.md')}, latest.svg, latest.json`)
}

module.exports = { writeResults }

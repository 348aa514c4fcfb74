#!/usr/bin/env node
// Scores results of the HTTP caching test suite "cache-tests"
// (npm package http-cache-tests, pinned at 0.4.5) for a reverse proxy.
//
//   node score.mjs [--suite DIR] [--failing] [--json] RESULTS.json...
//   node score.mjs [--suite DIR] --compare BASELINE.json CURRENT.json
//   node score.mjs [--suite DIR] --markdown-summary LABEL=RESULTS.json...
//   node score.mjs [--suite DIR] --markdown-failing RESULTS.json
//
// DIR is the installed package (default: ./node_modules/http-cache-tests,
// then node_modules/http-cache-tests next to this script, then the current
// directory itself). A RESULTS argument
// that is not a file but names one of the package's shipped results
// (e.g. "squid" for DIR/results/squid.json) is read from there.
//
// Counting rule (it reproduces the figures of the shipped results):
//   - the tests counted are those the CLI runs against a proxy: every test of
//     tests/index.mjs plus tests/surrogate-control.mjs whose `browser_only`
//     is not true (350 tests in 0.4.5);
//   - a test passes when its result is exactly `true`; anything else fails:
//     ["Assertion", msg], ["Setup", msg], ["Setup", "retry"], a harness error
//     such as ["FetchError", msg], or no result at all;
//   - a "must" test is one whose `kind` is absent or "required" (165 tests);
//     "optimal" and "check" tests count in passed/failed but never as must;
//   - `depends_on` is not applied: a test whose dependency failed still
//     counts by its own result (the web page's grey "dependency failed"
//     circle is display only);
//   - result ids that are not proxy tests of this suite are ignored (listed
//     as "ignored").
//
// --json prints, per file, the counts above plus `failedByKind` ({must,
// optimal, check}: failed tests by kind, must as defined above) and `failing`
// ([{id, kind, suite, name, message}], kind being must/optimal/check, name as
// plain text, message the recorded failure or "no result").
//
// --markdown-summary prints a GitHub markdown table, one row per LABEL=FILE
// argument in the order given (an argument without "=" is its own label):
// passed, failed, and failed must / optimal / check tests.
// --markdown-failing prints the failing tests of one file as a markdown list
// under the bold headings **must**, **optimal** and **check** (empty groups
// left out).
// Failing tests are listed must, optimal, check, then by id (code-point
// order); messages are collapsed to one line, so that identical runs give
// identical output (fit for a generated section of a README).
//
// Exit status: 0; with --compare, 1 when some test passing in BASELINE fails
// in CURRENT; 2 on a usage or input error.

import fs from 'fs'
import path from 'path'
import { fileURLToPath, pathToFileURL } from 'url'

const USAGE = `usage:
  node score.mjs [--suite DIR] [--failing] [--json] RESULTS.json...
  node score.mjs [--suite DIR] --compare BASELINE.json CURRENT.json
  node score.mjs [--suite DIR] --markdown-summary LABEL=RESULTS.json...
  node score.mjs [--suite DIR] --markdown-failing RESULTS.json`

function die (message) {
  console.error(message)
  process.exit(2)
}

function parseArgs (argv) {
  const opts = { suite: undefined, failing: false, json: false, compare: false, markdown: undefined, files: [] }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--suite') {
      if (i + 1 >= argv.length) die('--suite needs a directory\n' + USAGE)
      opts.suite = argv[++i]
    } else if (arg.startsWith('--suite=')) {
      opts.suite = arg.slice('--suite='.length)
    } else if (arg === '--failing') {
      opts.failing = true
    } else if (arg === '--json') {
      opts.json = true
    } else if (arg === '--compare') {
      opts.compare = true
    } else if (arg === '--markdown-summary' || arg === '--markdown-failing') {
      const mode = arg.slice('--markdown-'.length)
      if (opts.markdown !== undefined && opts.markdown !== mode) die('--markdown-summary and --markdown-failing exclude each other\n' + USAGE)
      opts.markdown = mode
    } else if (arg === '-h' || arg === '--help') {
      console.log(USAGE)
      process.exit(0)
    } else if (arg.startsWith('--')) {
      die(`unknown option ${arg}\n${USAGE}`)
    } else {
      opts.files.push(arg)
    }
  }
  if (opts.compare && opts.files.length !== 2) die('--compare takes exactly BASELINE and CURRENT\n' + USAGE)
  if (opts.markdown !== undefined) {
    const flag = `--markdown-${opts.markdown}`
    if (opts.compare) die(`${flag} and --compare exclude each other\n` + USAGE)
    if (opts.json) die(`${flag} and --json exclude each other\n` + USAGE)
    if (opts.markdown === 'failing' && opts.files.length !== 1) die('--markdown-failing takes exactly one RESULTS file\n' + USAGE)
  }
  if (opts.files.length === 0) die(USAGE)
  return opts
}

function findSuite (given) {
  const here = path.dirname(fileURLToPath(import.meta.url))
  const candidates = given !== undefined
    ? [path.resolve(given)]
    : [path.resolve('node_modules/http-cache-tests'), path.join(here, 'node_modules/http-cache-tests'), path.resolve('.')]
  for (const dir of candidates) {
    if (fs.existsSync(path.join(dir, 'tests/index.mjs'))) return dir
  }
  die(`cannot find the suite (tests/index.mjs) in: ${candidates.join(', ')}; pass --suite DIR`)
}

async function loadProxyTests (suiteDir) {
  const load = async rel => (await import(pathToFileURL(path.join(suiteDir, rel)).href)).default
  // what cli.mjs runs: tests/index.mjs with the Surrogate-Control suite pushed on
  const suites = [...await load('tests/index.mjs')]
  if (fs.existsSync(path.join(suiteDir, 'tests/surrogate-control.mjs'))) {
    const surrogate = await load('tests/surrogate-control.mjs')
    if (!suites.includes(surrogate)) suites.push(surrogate)
  }
  const tests = new Map()
  for (const suite of suites) {
    for (const test of suite.tests) {
      // client/runner.mjs skips browser_only tests when not testing a browser cache
      if (test.browser_only === true) continue
      if (tests.has(test.id)) die(`duplicate test id ${test.id}`)
      tests.set(test.id, { ...test, suiteId: suite.id, suiteName: suite.name })
    }
  }
  return tests
}

function isMust (test) {
  return test.kind === undefined || test.kind === 'required'
}

function plainName (name) {
  // markdown links [text](url) -> text
  return name.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').trim()
}

// the kind a test is listed and counted under: must, optimal or check
function kindOf (test) {
  return isMust(test) ? 'must' : String(test.kind)
}

const KIND_ORDER = ['must', 'optimal', 'check']

function kindRank (kind) {
  const i = KIND_ORDER.indexOf(kind)
  return i === -1 ? KIND_ORDER.length : i
}

// code-point order, independent of the locale
function cmp (a, b) {
  return a < b ? -1 : a > b ? 1 : 0
}

// collapses line breaks (and the blanks around them) to one space
function oneLine (text) {
  return String(text).replace(/[ \t]*(?:\r\n|[\r\n\u2028\u2029])\s*/g, ' ').trim()
}

// a test name as plain text: links -> their text, code spans -> their
// content, bold/emphasis asterisks dropped (asterisks inside code spans, as in
// `Vary: *`, are content and stay)
function plainText (name) {
  return oneLine(plainName(name)
    .split(/(`[^`]*`)/)
    .map(part => part.startsWith('`') && part.endsWith('`') && part.length >= 2 ? part.slice(1, -1) : part.replace(/\*/g, ''))
    .join(''))
}

function messageOf (result) {
  return oneLine(describe(result))
}

// backslash-escapes characters markdown could read as markup
function mdEscape (text) {
  return text.replace(/[\\`*_[\]<>~&|]/g, '\\$&')
}

function readResults (arg, suiteDir) {
  let file = arg
  if (!fs.existsSync(file)) {
    const shipped = path.join(suiteDir, 'results', arg.endsWith('.json') ? arg : `${arg}.json`)
    if (fs.existsSync(shipped)) file = shipped
    else die(`no such results file: ${arg}`)
  }
  let data
  try {
    data = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (err) {
    die(`${file}: not JSON (${err.message})`)
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) die(`${file}: expected an object of test id -> result`)
  return { file, data }
}

// 'pass' | 'missing' | 'retry' | 'setup' | 'assertion' | 'harness'
function classify (result) {
  if (result === true) return 'pass'
  if (result === undefined) return 'missing'
  if (Array.isArray(result)) {
    if (result[0] === 'Setup') return result[1] === 'retry' ? 'retry' : 'setup'
    if (result[0] === 'Assertion') return 'assertion'
  }
  return 'harness' // FetchError, TypeError, false, anything unexpected
}

function describe (result) {
  if (result === undefined) return 'no result'
  if (Array.isArray(result)) return `${result[0]}: ${result[1]}`
  return JSON.stringify(result)
}

function score (tests, data) {
  const s = {
    total: tests.size,
    passed: 0,
    failed: 0,
    must: 0,
    mustFailed: 0,
    byClass: { assertion: 0, setup: 0, retry: 0, harness: 0, missing: 0 },
    failedByKind: { must: 0, optimal: 0, check: 0 },
    failing: [],
    failingSorted: [],
    ignored: Object.keys(data).filter(id => !tests.has(id))
  }
  for (const test of tests.values()) {
    const result = data[test.id]
    const cls = classify(result)
    const must = isMust(test)
    if (must) s.must++
    if (cls === 'pass') {
      s.passed++
      continue
    }
    s.failed++
    s.byClass[cls]++
    if (must) s.mustFailed++
    s.failing.push({ id: test.id, kind: test.kind || 'must', must, suite: test.suiteId, name: plainName(test.name), result: describe(result) })
    const kind = kindOf(test)
    s.failedByKind[kind] = (s.failedByKind[kind] || 0) + 1
    s.failingSorted.push({ id: test.id, kind, suite: test.suiteId, name: plainText(test.name), message: messageOf(result) })
  }
  s.failingSorted.sort((a, b) => kindRank(a.kind) - kindRank(b.kind) || cmp(a.kind, b.kind) || cmp(a.id, b.id))
  return s
}

function markdownSummary (rows, total) {
  const lines = [
    `| results | passed (of ${total}) | failed | must failed | optimal failed | check failed |`,
    '| --- | ---: | ---: | ---: | ---: | ---: |'
  ]
  for (const { label, s } of rows) {
    const k = s.failedByKind
    lines.push(`| ${oneLine(label).replace(/\|/g, '\\|')} | ${s.passed} | ${s.failed} | ${k.must} | ${k.optimal} | ${k.check} |`)
  }
  return lines.join('\n')
}

function markdownFailing (s) {
  if (s.failingSorted.length === 0) return `No failing tests (${s.passed} of ${s.total} passed).`
  const groups = []
  let current
  for (const f of s.failingSorted) {
    if (!current || current.kind !== f.kind) groups.push(current = { kind: f.kind, lines: [] })
    current.lines.push(`- \`${f.id}\` (${f.kind}): ${mdEscape(f.name)} — ${mdEscape(f.message)}`)
  }
  return groups.map(g => `**${g.kind}**\n\n${g.lines.join('\n')}`).join('\n\n')
}

function printScore (file, s, withFailing) {
  const c = s.byClass
  console.log(`${file}: ${s.passed} passed, ${s.failed} failed, ${s.mustFailed} must failed (of ${s.total} proxy tests, ${s.must} must)`)
  console.log(`  failures: ${c.assertion} assertion, ${c.setup} setup, ${c.retry} retry, ${c.harness} harness error, ${c.missing} no result`)
  if (s.ignored.length) console.log(`  ignored ${s.ignored.length} result(s) for ids not among the proxy tests: ${s.ignored.join(', ')}`)
  if (withFailing) {
    for (const f of s.failing) {
      console.log(`  ${f.must ? 'MUST ' : '     '}${f.id} [${f.kind}, ${f.suite}] ${f.name}`)
      console.log(`        -> ${f.result}`)
    }
  }
}

async function main () {
  const opts = parseArgs(process.argv.slice(2))
  const suiteDir = findSuite(opts.suite)
  const tests = await loadProxyTests(suiteDir)

  if (opts.compare) {
    const base = readResults(opts.files[0], suiteDir)
    const cur = readResults(opts.files[1], suiteDir)
    const regressed = []
    const fixed = []
    for (const test of tests.values()) {
      const was = base.data[test.id] === true
      const is = cur.data[test.id] === true
      if (was && !is) regressed.push(test)
      if (!was && is) fixed.push(test)
    }
    if (opts.json) {
      const row = t => ({ id: t.id, kind: t.kind || 'must', must: isMust(t), name: plainName(t.name), current: describe(cur.data[t.id]) })
      console.log(JSON.stringify({ baseline: base.file, current: cur.file, regressed: regressed.map(row), fixed: fixed.map(t => t.id) }, null, 2))
    } else {
      console.log(`baseline ${base.file}: ${score(tests, base.data).passed} passed; current ${cur.file}: ${score(tests, cur.data).passed} passed`)
      console.log(`${regressed.length} test(s) passing in the baseline fail now${regressed.length ? ':' : '.'}`)
      for (const t of regressed) {
        console.log(`  ${isMust(t) ? 'MUST ' : '     '}${t.id} [${t.kind || 'must'}] ${plainName(t.name)}`)
        console.log(`        -> ${describe(cur.data[t.id])}`)
      }
      if (fixed.length) console.log(`${fixed.length} test(s) failing in the baseline pass now: ${fixed.map(t => t.id).join(', ')}`)
    }
    process.exit(regressed.length ? 1 : 0)
  }

  if (opts.markdown === 'summary') {
    const rows = opts.files.map(arg => {
      const eq = arg.indexOf('=')
      const label = eq === -1 ? arg : arg.slice(0, eq)
      const fileArg = eq === -1 ? arg : arg.slice(eq + 1)
      if (label === '' || fileArg === '') die(`--markdown-summary: expected LABEL=FILE, got ${JSON.stringify(arg)}\n` + USAGE)
      return { label, s: score(tests, readResults(fileArg, suiteDir).data) }
    })
    console.log(markdownSummary(rows, tests.size))
    return
  }
  if (opts.markdown === 'failing') {
    console.log(markdownFailing(score(tests, readResults(opts.files[0], suiteDir).data)))
    return
  }

  const out = []
  for (const arg of opts.files) {
    const { file, data } = readResults(arg, suiteDir)
    const s = score(tests, data)
    if (opts.json) {
      out.push({ file, total: s.total, passed: s.passed, failed: s.failed, must: s.must, mustFailed: s.mustFailed, byClass: s.byClass, ignored: s.ignored, failedByKind: s.failedByKind, failing: s.failingSorted })
    } else {
      printScore(file, s, opts.failing)
    }
  }
  if (opts.json) console.log(JSON.stringify(out, null, 2))
}

main().catch(err => {
  console.error(err)
  process.exit(2)
})

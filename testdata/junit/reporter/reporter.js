// Reads a JUnit XML file as dorny/test-reporter's java-junit reporter
// does: parsed by xml2js (the library and call that reporter uses), the
// suites of the <testsuites> root (or a <testsuite> root as the only
// suite), the cases of each suite grouped by classname (none when it is
// the suite's name), and each case's result by that reporter's rule:
// failed when it holds a <failure> or an <error>, skipped when it holds a
// <skipped>, success otherwise (so Surefire's <flakyFailure> passes).
// Prints what the reporter would show, as JSON, for commands/junit_test.go.
//
//   node reporter.js FILE.xml
'use strict'
const fs = require('fs')
const {parseStringPromise} = require('xml2js')

async function main(file) {
  const doc = await parseStringPromise(fs.readFileSync(file, 'utf8'))
  const root = doc.testsuites !== undefined ? doc.testsuites : {$: {}, testsuite: [doc.testsuite]}
  const suites = (root.testsuite || []).map(ts => {
    const name = ts.$.name.trim()
    const cases = (ts.testcase || []).map(tc => {
      const failures = tc.failure || tc.error
      const first = failures ? failures[0] : undefined
      return {
        group: tc.$.classname === ts.$.name ? '' : tc.$.classname,
        name: tc.$.name.trim(),
        result: failures ? 'failed' : tc.skipped ? 'skipped' : 'success',
        time_ms: parseFloat(tc.$.time) * 1000,
        message: typeof first === 'object' ? first.$ && first.$.message : undefined,
        details: typeof first === 'object' ? first._ : first
      }
    })
    return {name, time_ms: parseFloat(ts.$.time) * 1000, cases}
  })
  const count = r => suites.reduce((n, s) => n + s.cases.filter(c => c.result === r).length, 0)
  process.stdout.write(JSON.stringify({
    suites,
    passed: count('success'),
    failed: count('failed'),
    skipped: count('skipped')
  }, null, 1) + '\n')
}

main(process.argv[2]).catch(e => {
  process.stderr.write(`reporter.js: ${e.message}\n`)
  process.exit(1)
})

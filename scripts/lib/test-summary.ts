// Prints the closing line of a test run from vitest's JSON report, in the plain
// "N passed, N failed, N skipped" form that CI reads, and fails when no test ran.
import { readFileSync } from 'node:fs';

const file = process.argv[2];
if (!file) throw new Error('usage: test-summary.ts RESULTS_JSON');
let report: {
  numTotalTests: number;
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
};
try {
  report = JSON.parse(readFileSync(file, 'utf8'));
} catch (err) {
  console.error(`test-summary: no readable test report at ${file}: ${(err as Error).message}`);
  process.exit(1);
}
const skipped = report.numPendingTests + report.numTodoTests;
console.log(`tests: ${report.numPassedTests} passed, ${report.numFailedTests} failed, ${skipped} skipped`);
if (report.numTotalTests === 0) {
  console.error('test-summary: no test ran');
  process.exit(1);
}
process.exit(report.numFailedTests > 0 ? 1 : 0);

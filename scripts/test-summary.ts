/**
 * Prints `N passed, M failed` from vitest's JSON report (test-results/vitest.json) and the
 * nemesis run's (test-results/nemesis.json, one check: no anomaly and no run error), and exits
 * non-zero when M > 0 or a report is missing. M also counts each test file that failed without a
 * failed test (it did not load, or a hook threw), which vitest's own counts omit. A missing report
 * counts as one failure, so the last line still says the run failed.
 */
import { readFileSync } from "node:fs";

const REPORT = new URL("../test-results/vitest.json", import.meta.url);
const NEMESIS = new URL("../test-results/nemesis.json", import.meta.url);

/** The part of vitest's JSON report that the summary reads. */
interface VitestReport {
  numPassedTests: number;
  numFailedTests: number;
  testResults: { status: "passed" | "failed"; assertionResults: { status: string }[] }[];
}

let report: VitestReport;
try {
  report = JSON.parse(readFileSync(REPORT, "utf8")) as VitestReport;
} catch (error) {
  console.error(`test-summary: cannot read ${REPORT.pathname}: ${(error as Error).message}`);
  console.log("0 passed, 1 failed");
  process.exit(1);
}

const brokenFiles = report.testResults.filter(
  (file) => file.status === "failed" && !file.assertionResults.some((test) => test.status === "failed"),
).length;
let nemesisOk = false;
try {
  const nemesis = JSON.parse(readFileSync(NEMESIS, "utf8")) as { ok: boolean; seed: number };
  nemesisOk = nemesis.ok;
  if (!nemesis.ok) console.error(`test-summary: the nemesis run (seed ${nemesis.seed}) found anomalies or failed: see ${NEMESIS.pathname}`);
} catch (error) {
  console.error(`test-summary: cannot read ${NEMESIS.pathname}: ${(error as Error).message}`);
}
const failed = report.numFailedTests + brokenFiles + (nemesisOk ? 0 : 1);
console.log(`${report.numPassedTests + (nemesisOk ? 1 : 0)} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);

// Runs the dashboard's unit tests (test/*.test.mjs) with Node's own test runner. Each test file
// is bundled first with esbuild, so that it can import the dashboard's TypeScript modules as the
// page does (`npm test`; scripts/test runs it before building the dashboard).
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const tests = readdirSync("test").filter((f) => f.endsWith(".test.mjs"));
const out = mkdtempSync(join(tmpdir(), "printyard-web-test-"));
try {
  await build({
    entryPoints: tests.map((f) => join("test", f)),
    bundle: true,
    platform: "node",
    format: "esm",
    outdir: out,
    outExtension: { ".js": ".mjs" },
    logLevel: "warning",
  });
  const run = spawnSync(process.execPath, ["--test", "--test-reporter=spec", ...tests.map((f) => join(out, f))], { stdio: "inherit" });
  process.exitCode = run.status ?? 1;
} finally {
  rmSync(out, { recursive: true, force: true });
}

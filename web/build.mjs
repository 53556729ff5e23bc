// Builds the dashboard into dist/: one script and one style sheet with content hashes in their
// names, index.html that loads them, and a gzip twin of each text file for the api to send.
// Fails when the first load's JavaScript exceeds the budget (gzip bytes).
import { build } from "esbuild";
import { gzipSync } from "node:zlib";
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";

const BUDGET_JS_GZIP = 300 * 1024;
const out = "dist";

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const result = await build({
  entryPoints: ["src/main.tsx"],
  bundle: true,
  minify: true,
  sourcemap: false,
  format: "esm",
  target: ["es2020"],
  jsx: "automatic",
  jsxImportSource: "preact",
  entryNames: "assets/[name]-[hash]",
  outdir: out,
  metafile: true,
  legalComments: "none",
  logLevel: "warning",
});

const outputs = Object.keys(result.metafile.outputs).map((p) => relative(out, p));
const script = outputs.find((p) => p.endsWith(".js"));
const style = outputs.find((p) => p.endsWith(".css"));
const html = readFileSync("src/index.html", "utf8")
  .replace("%SCRIPT%", `/${script}`)
  .replace("%STYLE%", `/${style}`);
writeFileSync(join(out, "index.html"), html);

const files = [];
const walk = (dir) => {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else files.push(path);
  }
};
walk(out);
let jsGzip = 0;
for (const path of files) {
  if (!/\.(js|css|html|svg|json)$/.test(path)) continue;
  const zipped = gzipSync(readFileSync(path), { level: 9 });
  writeFileSync(`${path}.gz`, zipped);
  if (path.endsWith(".js")) jsGzip += zipped.length;
  console.log(`${relative(out, path).padEnd(36)} ${statSync(path).size.toString().padStart(8)} B, gzip ${zipped.length} B`);
}
console.log(`first load JavaScript: ${jsGzip} B gzip (budget ${BUDGET_JS_GZIP} B)`);
if (jsGzip > BUDGET_JS_GZIP) {
  console.error("error: the dashboard's JavaScript is over its budget");
  process.exit(1);
}

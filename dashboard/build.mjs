// Builds the dashboard into dist/ (which the obol binary embeds): one script, one style sheet,
// the page and its icon. The output depends only on src/ and the locked packages, so
// scripts/test can rebuild it and compare with what is committed.
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

const out = process.argv[2] ?? "dist";
mkdirSync(out, { recursive: true });
await esbuild.build({
  entryPoints: { app: "src/main.jsx" },
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "eof",
  charset: "utf8",
  outdir: out,
  logLevel: "warning",
});
await esbuild.build({
  entryPoints: { app: "src/app.css" },
  bundle: true,
  minify: true,
  outdir: out,
  logLevel: "warning",
});
copyFileSync("src/index.html", `${out}/index.html`);
copyFileSync("src/icon.svg", `${out}/icon.svg`);

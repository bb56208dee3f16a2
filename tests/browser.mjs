// Render one page in the headless Chromium that `npm ci` brings (no root, nothing installed system-wide) and print
// the <body> element's attributes as JSON on stdout. Driven by tests/browser.py; usage:
//
//   node tests/browser.mjs <page-url> <wait-for: a JS expression, true when the page is done> <timeout-ms>
//
// The browser is @sparticuz/chromium's (pinned in package.json): a Brotli-compressed Linux x64 Chromium inside the
// npm tarball, with the few shared libraries it needs (NSS, expat: al2023.tar.br) and a font, so it runs on a
// machine that has glibc and nothing else of a browser. It is unpacked once per checkout into
// node_modules/.cache/ (staged in a private folder, renamed into place: two test workers never see half a
// binary) and driven over the DevTools protocol by puppeteer-core (which downloads nothing); the bare binary's
// --dump-dom hung on this kind of machine.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";

import chromium from "@sparticuz/chromium";
import puppeteer from "puppeteer-core";

const [url, waitFor, timeoutArg] = process.argv.slice(2);
if (!url || !waitFor) {
  console.error("usage: node tests/browser.mjs <page-url> <wait-for JS expression> [timeout-ms]");
  process.exit(2);
}
const timeout = Number(timeoutArg || 60000);
const require = createRequire(import.meta.url);
const pkgDir = join(dirname(require.resolve("@sparticuz/chromium")), "..", ".."); // build/cjs/index.cjs
const { version } = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
const root = join(pkgDir, "..", "..", ".cache", `sparticuz-chromium-${version}`);

/** The unpacked browser folder (chromium, its libraries and fonts), unpacking it on first use. */
async function unpacked() {
  if (existsSync(join(root, "chromium"))) return root;
  mkdirSync(dirname(root), { recursive: true });
  const staging = mkdtempSync(`${root}.partial-`);
  const saved = process.env.TMPDIR;
  process.env.TMPDIR = staging; // the package unpacks into os.tmpdir()
  try {
    const { inflate } = await import(pathToFileURL(join(pkgDir, "build", "esm", "lambdafs.js")).href);
    await chromium.executablePath(join(pkgDir, "bin")); // chromium, fonts, swiftshader
    await inflate(join(pkgDir, "bin", "al2023.tar.br")); // NSS and expat: no system package needed
  } finally {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
  }
  try {
    renameSync(staging, root);
  } catch (error) {
    rmSync(staging, { recursive: true, force: true }); // another worker was first: use its copy
    if (!existsSync(join(root, "chromium"))) throw error;
  }
  return root;
}

const dir = await unpacked();
const scratch = mkdtempSync(join(tmpdir(), "recsys-browser-"));
const fontsConf = join(scratch, "fonts.conf");
writeFileSync(fontsConf, `<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>` +
  `<dir>${join(dir, "fonts", "fonts")}</dir><cachedir>${join(scratch, "fonts-cache")}</cachedir></fontconfig>\n`);
const libs = join(dir, "al2023", "lib");
const env = {
  ...process.env,
  TMPDIR: scratch,
  FONTCONFIG_FILE: fontsConf,
  LD_LIBRARY_PATH: [libs, dir, process.env.LD_LIBRARY_PATH].filter(Boolean).join(":"),
};
const errors = [];
let browser;
try {
  browser = await puppeteer.launch({
    executablePath: join(dir, "chromium"),
    args: [...chromium.args, "--disable-background-networking", "--disable-component-update", "--no-first-run"],
    headless: "shell",
    env,
    userDataDir: join(scratch, "profile"),
    timeout,
    protocolTimeout: timeout,
  });
  const page = await browser.newPage();
  page.on("pageerror", (error) => errors.push(`pageerror: ${error.message}`));
  page.on("console", (msg) => msg.type() === "error" && errors.push(`console.error: ${msg.text()}`));
  await page.goto(url, { waitUntil: "load", timeout });
  let done = true;
  try {
    await page.waitForFunction(waitFor, { timeout, polling: 50 });
  } catch {
    done = false; // print what the page shows; the caller's assertions name what is missing
  }
  const attributes = await page.evaluate(() =>
    Object.fromEntries([...document.body.attributes].map((a) => [a.name, a.value])));
  const executable = browser.process()?.spawnfile ?? ""; // the binary actually started, for the caller to check
  const version = await browser.version();
  process.stdout.write(`${JSON.stringify({ attributes, done, errors, executable, version })}\n`);
} finally {
  if (browser) await browser.close();
  rmSync(scratch, { recursive: true, force: true });
}

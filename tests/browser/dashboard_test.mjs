// Drives the gateway dashboard in Debian's headless Chromium (playwright-core,
// no browser download): the page loads, lists the running instances, and
// shows one disappearing after it is killed with SIGKILL.
//
//   node dashboard_test.mjs --url http://127.0.0.1:PORT/dashboard --service user-service \
//        --instances id1,id2 --kill-id id2 --kill-pid 1234 --within-ms 10000 --artifacts DIR
//
// Started by the gtest that runs the servers (gateway_browser_test.cpp); it
// kills only the PID it is given, a process that test started. Writes
// DIR/dashboard-before.png and DIR/dashboard.png (after the kill); prints one
// JSON line with the timings; exit code 0 on success.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

function args() {
  const out = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, "")] = argv[i + 1];
  for (const key of ["url", "service", "instances", "kill-id", "kill-pid", "artifacts"]) {
    if (!out[key]) throw new Error(`missing --${key}`);
  }
  return out;
}

const opts = args();
const withinMs = Number(opts["within-ms"] || 10000);
const expected = opts.instances.split(",").sort();
mkdirSync(opts.artifacts, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), "disco-chromium-"));
let context;
let failed = null;
const result = { service: opts.service };
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 720 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = context.pages()[0] || await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(opts.url, { waitUntil: "load", timeout: 15000 });
  const rows = `section[data-service="${opts.service}"] tbody tr[data-instance]`;
  // Loaded and live: the status says so and every instance is listed.
  await page.waitForSelector("#status.ok", { timeout: 10000 });
  await page.waitForFunction(([sel, n]) => document.querySelectorAll(sel).length === n,
                             [rows, expected.length], { timeout: 15000 });
  const listed = (await page.$$eval(rows, (trs) => trs.map((tr) => tr.dataset.instance))).sort();
  if (JSON.stringify(listed) !== JSON.stringify(expected)) {
    throw new Error(`listed ${listed} instead of ${expected}`);
  }
  result.registry = await page.textContent("#registry");
  await page.screenshot({ path: join(opts.artifacts, "dashboard-before.png"), fullPage: true });

  const killedAt = Date.now();
  process.kill(Number(opts["kill-pid"]), "SIGKILL");
  const gone = `section[data-service="${opts.service}"] tr[data-instance="${opts["kill-id"]}"]`;
  await page.waitForFunction((sel) => document.querySelectorAll(sel).length === 0, gone,
                             { timeout: withinMs, polling: 100 });
  result.disappeared_ms = Date.now() - killedAt;
  // The page's change log names the departure.
  await page.waitForFunction((id) => [...document.querySelectorAll("#events li")]
                                       .some((li) => li.textContent.includes(id) && li.textContent.includes("left")),
                             opts["kill-id"], { timeout: 3000 });
  result.remaining = (await page.$$eval(rows, (trs) => trs.map((tr) => tr.dataset.instance))).sort();
  await page.screenshot({ path: join(opts.artifacts, "dashboard.png"), fullPage: true });
  if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
} catch (error) {
  failed = error;
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
result.ok = failed === null;
if (failed) result.error = String(failed.message || failed);
console.log(JSON.stringify(result));
process.exit(failed ? 1 : 0);

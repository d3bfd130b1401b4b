// Drives the gateway dashboard in Debian's headless Chromium (playwright-core,
// no browser download) through a failover, under load the caller makes:
//   - the page loads, lists the running instances and draws the charts
//     (a stacked rate area per instance, latency lines, the event timeline);
//   - after one instance is killed with SIGKILL, its row disappears, the
//     chart data shows its rate fall to zero and the others' rise, and the
//     timeline shows the gateway's ejection before the registry's removal.
//
//   node dashboard_test.mjs --url http://127.0.0.1:PORT/dashboard --service user-service \
//        --instances id1,id2 --kill-id id2 --kill-pid 1234 --within-ms 10000 --artifacts DIR
//
// Started by the gtest that runs the servers (gateway_stack_test.cpp); it
// kills only the PID it is given, a process that test started. Writes
// DIR/dashboard-before.png, DIR/dashboard.png and DIR/dashboard-failover.png
// (after the kill); prints one JSON line with the timings; exit code 0 on
// success.
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
let killedAt;
const result = { service: opts.service };
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = context.pages()[0] || await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // Thirty seconds on the time axis: the scene fills the picture.
  await page.goto(`${opts.url}?window=30`, { waitUntil: "load", timeout: 15000 });
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

  // The charts: one stacked area per instance, fed by traffic to both.
  const victim = opts["kill-id"];
  const survivors = expected.filter((id) => id !== victim);
  const areas = `svg.rate[data-service="${opts.service}"] path.area[data-instance]`;
  await page.waitForFunction(([sel, n]) => document.querySelectorAll(sel).length === n,
                             [areas, expected.length], { timeout: 15000 });
  // Five samples in which every instance took traffic: the "before" (three
  // are measured; two more give the picture a steady start).
  await page.waitForFunction(([service, ids]) => {
    const s = window.discoCharts?.series;
    if (!s) return false;
    const rows = ids.map((id) => s.instances.find((i) => i.service === service && i.id === id));
    if (rows.some((r) => !r)) return false;
    const n = s.t.length;
    return n >= 5 && rows.every((r) => [1, 2, 3, 4, 5].every((back) => r.rps[n - back] > 0));
  }, [opts.service, expected], { timeout: 15000, polling: 200 });
  // A sample counts what happened since the one before it: usually a
  // second, longer when the gateway was starved of CPU. Samples are chosen
  // by the whole of their interval, so none straddles the kill.
  const rates = (series, id, from, to) => {
    const row = series.instances.find((i) => i.service === opts.service && i.id === id);
    const start = (k) => (k > 0 ? series.t[k - 1] : series.t[k] - series.interval_ms);
    const picked = series.t.map((t, k) => [start(k), t, row ? row.rps[k] : null])
                           .filter(([begin, t]) => begin >= from && t <= to);
    return picked.map(([, , v]) => v);
  };
  const mean = (values) => values.reduce((a, v) => a + (v || 0), 0) / Math.max(1, values.length);
  const before = await page.evaluate(() => window.discoCharts.series);
  const beforeEnd = before.t[before.t.length - 1];
  result.rps_before = Object.fromEntries(expected.map((id) => [id, mean(rates(before, id, beforeEnd - 3500, beforeEnd))]));
  if (!(await page.$(`svg#latency-chart path.latency[data-service="${opts.service}"]`))) {
    throw new Error("no latency line drawn");
  }
  await page.screenshot({ path: join(opts.artifacts, "dashboard-before.png"), fullPage: true });

  killedAt = Date.now();
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

  // The chart data: the victim's rate is zero (ejected) or gone (removed) in
  // every sample after the kill (two at least), and every survivor carries more than
  // before. Judged by share as well as by rate: a loaded machine (CI runs
  // tests side by side) may slow the load itself, so "more" is "more than
  // before" and the share must go from about half to all.
  // (Half a second for the gateway to eject it: its first refused connection.)
  await page.waitForFunction(([service, victimId, from]) => {
    const s = window.discoCharts?.series;
    const row = s?.instances.find((i) => i.service === service && i.id === victimId);
    const after = s ? s.t.map((t, k) => [k > 0 ? s.t[k - 1] : t - s.interval_ms, row ? row.rps[k] : null])
                        .filter(([begin]) => begin >= from) : [];
    return after.length >= 2 && after.every(([, v]) => !v);
  }, [opts.service, victim, killedAt + 500], { timeout: 10000, polling: 200 });
  const after = await page.evaluate(() => window.discoCharts.series);
  const afterEnd = after.t[after.t.length - 1];
  result.rps_after = Object.fromEntries(expected.map((id) => [id, mean(rates(after, id, killedAt + 500, afterEnd))]));
  const total = (rps) => Object.values(rps).reduce((a, v) => a + v, 0);
  for (const id of survivors) {
    const shareBefore = result.rps_before[id] / total(result.rps_before);
    const shareAfter = result.rps_after[id] / total(result.rps_after);
    if (!(result.rps_after[id] > result.rps_before[id] && shareAfter > 0.95 * (survivors.length === 1 ? 1 : 1 / survivors.length) &&
          shareBefore < 0.75)) {
      throw new Error(`${id} did not take over: ${result.rps_before[id]}/s (share ${shareBefore.toFixed(2)}) before, ` +
                      `${result.rps_after[id]}/s (share ${shareAfter.toFixed(2)}) after`);
    }
  }
  // The timeline: the gateway's ejection, then the registry's removal.
  const mark = (kind) => `svg#timeline g.event[data-kind="${kind}"][data-instance="${victim}"]`;
  await page.waitForSelector(mark("ejected"), { timeout: 5000 });
  await page.waitForSelector(mark("expired"), { timeout: 5000 });
  const ejectedAt = Number(await page.getAttribute(mark("ejected"), "data-t"));
  const removedAt = Number(await page.getAttribute(mark("expired"), "data-t"));
  result.ejected_after_kill_ms = ejectedAt - killedAt;
  result.removed_after_kill_ms = removedAt - killedAt;
  if (!(ejectedAt < removedAt)) throw new Error(`ejected at ${ejectedAt}, removed at ${removedAt}`);
  // Two more samples, so the picture shows the others carrying the load.
  await page.waitForFunction((n) => window.discoCharts.drawn >= n, (await page.evaluate(() => window.discoCharts.drawn)) + 2,
                             { timeout: 5000 });
  await page.screenshot({ path: join(opts.artifacts, "dashboard.png"), fullPage: true });
  await page.screenshot({ path: join(opts.artifacts, "dashboard-failover.png"), fullPage: false });
  if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
} catch (error) {
  failed = error;
  // What the charts had, for the log: the last samples and the events.
  try {
    result.charts = await context.pages()[0].evaluate(() => {
      const c = window.discoCharts;
      const s = c?.series;
      if (!s) return c;
      const last = (a) => a.slice(-12);
      return {drawn: c.drawn, lastError: c.lastError, t: last(s.t), now: s.now,
              instances: s.instances.map((i) => ({id: i.id, rps: last(i.rps), ejected: last(i.ejected)})),
              events: s.events.slice(-10)};
    });
    result.killed_at = typeof killedAt === "number" ? killedAt : null;
  } catch {}
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
result.ok = failed === null;
if (failed) result.error = String(failed.message || failed);
console.log(JSON.stringify(result));
process.exit(failed ? 1 : 0);

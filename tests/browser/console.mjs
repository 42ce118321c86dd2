// Drives the tsrelay console in Debian's Chromium (headless) with playwright-core.
// Run by tests/console_browser.rs:
//   node console.mjs views <base-url> <screenshot-dir> <backends,comma,separated> <disabled-backend:graph>
//   node console.mjs auth  <base-url> <screenshot-dir> <read-key>
// Exits non-zero naming the failed check; prints one JSON line of findings on success.
import { chromium } from "playwright-core";
import { join } from "node:path";

const [mode, base, shots, arg] = process.argv.slice(2);
const STEP_TIMEOUT = 20000;

function check(ok, what) {
  if (!ok) throw new Error("check failed: " + what);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
page.setDefaultTimeout(STEP_TIMEOUT);

// Every console error and uncaught exception; HTTP error answers the page expects
// (422 from compile, 404 from a missing catalog, 401 before the key) are sorted out later.
const errors = [];
page.on("console", (m) => { if (m.type() === "error") errors.push({ text: m.text(), url: m.location().url || "" }); });
page.on("pageerror", (e) => errors.push({ text: "uncaught: " + e.message, url: "" }));
// Nothing but the console's own origin.
const foreign = [];
page.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith("data:")) foreign.push(r.url()); });

const number = (s) => {
  const m = /^([\d.]+)\s*([kMG]?)/.exec(s.trim());
  if (!m) return NaN;
  return parseFloat(m[1]) * ({ "": 1, k: 1e3, M: 1e6, G: 1e9 })[m[2]];
};

const findings = { mode, screenshots: [] };
async function shot(name) {
  const path = join(shots, name + ".png");
  await page.screenshot({ path, fullPage: false });
  findings.screenshots.push(path);
}

// Pixels of a colour (±12 per channel) in a canvas: uPlot strokes the first line in #2b6cb0.
async function strokePixels(figure) {
  return figure.locator("canvas").evaluate((c) => {
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (Math.abs(d[i] - 0x2b) < 12 && Math.abs(d[i + 1] - 0x6c) < 12 && Math.abs(d[i + 2] - 0xb0) < 12 && d[i + 3] > 200) n++;
    }
    return n;
  });
}

try {
  if (mode === "views") {
    const [backendList, disabled] = [arg, process.argv[6]];
    await page.goto(base + "/");
    await page.waitForSelector('[data-testid="rx-total-http"]');
    const loadErrors = errors.length;
    check(loadErrors === 0, "no console errors on load: " + JSON.stringify(errors));

    // Status: the numbers move while the load runs.
    const total = () => page.locator('[data-testid="rx-total-http"]').innerText().then(number);
    const first = await total();
    await page.waitForFunction((was) => {
      const t = document.querySelector('[data-testid="rx-total-http"]').textContent;
      return t !== was;
    }, await page.locator('[data-testid="rx-total-http"]').innerText(), { timeout: 10000 });
    await page.waitForTimeout(1500);
    const second = await total();
    check(second > first, `received total grows (${first} → ${second})`);
    await page.waitForFunction(() => {
      const r = document.querySelector('[data-testid^="rx-rate-http"]');
      return r && parseFloat(r.textContent) > 0;
    }, null, { timeout: 10000 });
    findings.status = { first, second, rate: await page.locator('[data-testid="rx-rate-http"]').innerText(),
      sinks: await page.locator("#st-sinks tbody tr").count() };
    await shot("status");
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(1200);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 1, "no horizontal page overflow at phone width: " + overflow);
    await shot("status-phone");
    await page.setViewportSize({ width: 1280, height: 800 });

    // Graphs: keyboard to the tab (the tabs are buttons; 2 switches views).
    await page.keyboard.press("2");
    check(await page.locator("#tab-graphs").getAttribute("aria-selected") === "true", "key 2 opens Graphs");
    await page.selectOption("#gr-range", "86400");
    findings.graphs = {};
    for (const backend of backendList.split(",")) {
      await page.selectOption("#gr-backend", backend);
      const fig = page.locator('figure[data-graph="golden.load.avg"]');
      await fig.locator("canvas").waitFor();
      await page.waitForFunction(() => document.querySelectorAll("#gr-list li").length > 0);
      let pixels = 0;
      for (let i = 0; i < 50 && pixels < 30; i++) {
        pixels = await strokePixels(fig);
        if (pixels < 30) await page.waitForTimeout(100);
      }
      check(pixels >= 30, `${backend}: the golden.load.avg canvas has drawn line pixels (${pixels})`);
      const legend = await fig.locator(".u-legend .u-series .u-label").allInnerTexts();
      // The same request through the API: its legends are the chart's.
      const api = await page.evaluate(async (backend) => {
        const r = await fetch("/api/v1/graph/compile", { method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ graph: "golden.load.avg", backend, start: "-86400s", step: "300s" }) });
        const rr = await fetch("/api/v1/graph/render", { method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ graph: "golden.load.avg", backend, start: "-86400s", step: "300s" }) });
        return { compile: r.status, legends: (await rr.json()).data.series.map((s) => s.legend) };
      }, backend);
      const shown = legend.filter((l) => l !== "Time" && l !== "");
      check(JSON.stringify(shown) === JSON.stringify(api.legends),
        `${backend}: legend ${JSON.stringify(shown)} = render API ${JSON.stringify(api.legends)}`);
      const caption = await fig.locator("figcaption").innerText();
      findings.graphs[backend] = { pixels, legend: shown, caption, caps: await page.locator("#gr-caps").innerText() };
      await shot("graphs-" + backend);
    }
    if (disabled) {
      const [backend, graph] = disabled.split(":");
      await page.selectOption("#gr-backend", backend);
      const item = page.locator(`#gr-list li[data-graph="${graph}"]`);
      await item.locator(".reason").waitFor();
      check(await item.getAttribute("class") === "disabled", `${graph} disabled on ${backend}`);
      check(await item.locator("a").getAttribute("aria-disabled") === "true", "aria-disabled set");
      const reason = await item.locator(".reason").innerText();
      findings.disabled = { backend, graph, reason };
      await page.locator(`figure[data-graph="${graph}"]`).scrollIntoViewIfNeeded();
      await shot("graphs-disabled");
    }

    // Catalog, by keyboard: focus the tab list and move right.
    await page.locator("#tab-graphs").focus();
    await page.keyboard.press("ArrowRight");
    check(await page.locator("#tab-catalog").getAttribute("aria-selected") === "true", "ArrowRight moves to Catalog");
    await page.waitForSelector("#ca-table tbody tr td");
    const rows = await page.locator("#ca-table tbody tr").allInnerTexts();
    check(rows.some((r) => r.includes("golden")), "catalog lists the golden metrics: " + rows.join(" | "));
    findings.catalog = { rows: rows.length, source: await page.locator("#ca-source").innerText(), first: rows[0] };
    await page.fill("#ca-filter", "host=");
    findings.catalog.filtered = await page.locator("#ca-table tbody tr").count();
    await page.fill("#ca-filter", "");
    await shot("catalog");
  } else if (mode === "auth") {
    const key = arg;
    await page.goto(base + "/");
    await page.locator("#key-form").waitFor({ state: "visible" });
    await shot("auth-key-form");
    await page.fill("#key-input", "tsr_wrong");
    await page.click('#key-form button[type="submit"]');
    await page.waitForFunction(() => sessionStorage.getItem("tsrelay.readKey") === "tsr_wrong");
    await page.locator("#key-form").waitFor({ state: "visible" });
    await page.fill("#key-input", key);
    await page.click('#key-form button[type="submit"]');
    await page.waitForSelector('[data-testid="rx-total-http"]');
    check(await page.locator("#key-form").isHidden(), "the form goes once a good key is given");
    check(await page.evaluate(() => sessionStorage.getItem("tsrelay.readKey")) === key, "the key is in sessionStorage");
    // a reload keeps it (same tab), no form
    await page.reload();
    await page.waitForSelector('[data-testid="rx-total-http"]');
    check(await page.locator("#key-form").isHidden(), "no form after a reload in the same tab");
    findings.auth = { status: await page.locator("#st-ready").innerText() };
    await shot("auth-status");
  } else {
    throw new Error("unknown mode " + mode);
  }

  // Console errors after load: only HTTP answers the page expects and handles.
  const expected = (e) => /Failed to load resource: the server responded with a status of (422|404|401)/.test(e.text) &&
    (/\/api\/v1\/graph\/compile$/.test(e.url) || /\/api\/v1\/catalog$/.test(e.url) || (mode === "auth" && /\/api\/v1\//.test(e.url)));
  const unexpected = errors.filter((e) => !expected(e));
  check(unexpected.length === 0, "console errors: " + JSON.stringify(unexpected));
  check(foreign.length === 0, "requests to other origins: " + foreign.join(", "));
  findings.expected_http_errors = errors.length;
  console.log(JSON.stringify(findings));
} catch (e) {
  try { await shot("failure-" + mode); } catch (_) { /* ignore */ }
  console.error(e.stack || String(e));
  console.error("console errors seen: " + JSON.stringify(errors));
  process.exitCode = 1;
} finally {
  await browser.close();
}

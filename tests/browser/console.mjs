// Drives the tsrelay console in Debian's Chromium (headless) with playwright-core.
// Run by tests/console_browser.rs:
//   node console.mjs views <base-url> <screenshot-dir> <backends,comma,separated> <disabled-backend:graph> <catalog-json>
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
// What a failing API call answered (named when a check fails).
const failedAnswers = [];
page.on("response", async (r) => {
  if (r.status() >= 500) failedAnswers.push(r.status() + " " + r.url() + " " + (r.request().postData() || "") + " → " + await r.text().catch(() => "?"));
});
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
function strokePixels(canvas) {
  const d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (Math.abs(d[i] - 0x2b) < 12 && Math.abs(d[i + 1] - 0x6c) < 12 && Math.abs(d[i + 2] - 0xb0) < 12 && d[i + 3] > 200) n++;
  }
  return n;
}

// How far the page is wider than the window (a horizontal scrollbar when > 0).
const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);

// The filter's suggestions, as shown.
const suggestions = () => page.locator("#ca-suggest button code").allInnerTexts();

try {
  if (mode === "views") {
    const [backendList, disabled, expectJson] = [arg, process.argv[6], process.argv[7]];
    const expect = JSON.parse(expectJson);
    await page.goto(base + "/");
    await page.waitForSelector('[data-testid="rx-total-http"]');
    const loadErrors = errors.length;
    check(loadErrors === 0, "no console errors on load: " + JSON.stringify(errors));

    // Keyboard: Tab from the top of the page reaches the view switcher; arrows move along it.
    let focused = null;
    for (let i = 0; i < 5 && focused === null; i++) {
      await page.keyboard.press("Tab");
      focused = await page.evaluate(() => document.activeElement.getAttribute("role") === "tab" ? document.activeElement.id : null);
    }
    check(focused === "tab-status", "Tab reaches the Status tab first (focused: " + focused + ")");
    await page.keyboard.press("ArrowLeft");
    check(await page.locator("#tab-catalog").getAttribute("aria-selected") === "true", "ArrowLeft wraps to Catalog");
    check(await page.evaluate(() => document.activeElement.id) === "tab-catalog", "focus follows the selected tab");
    await page.keyboard.press("ArrowRight");
    check(await page.locator("#tab-status").getAttribute("aria-selected") === "true", "ArrowRight back to Status");
    await page.waitForSelector('[data-testid="rx-total-http"]');

    // Status: the numbers move while the load runs.
    const total = () => page.locator('[data-testid="rx-total-http"]').innerText().then(number);
    const first = await total();
    await page.waitForFunction((was) => {
      const t = document.querySelector('[data-testid="rx-total-http"]').textContent.trim();
      const m = /^([\d.]+)\s*([kMG]?)/.exec(t);
      return m && parseFloat(m[1]) * ({ "": 1, k: 1e3, M: 1e6, G: 1e9 })[m[2]] > was;
    }, first, { timeout: 10000 });
    const second = await total();
    check(second > first, `received total grows (${first} → ${second})`);
    await page.waitForFunction(() => {
      const r = document.querySelector('[data-testid^="rx-rate-http"]');
      return r && parseFloat(r.textContent) > 0;
    }, null, { timeout: 10000 });
    findings.status = { first, second, rate: await page.locator('[data-testid="rx-rate-http"]').innerText(),
      sinks: await page.locator("#st-sinks tbody tr").count() };
    check(await overflow() <= 0, "no horizontal page overflow at 1280 px: " + await overflow());
    await page.evaluate(() => document.activeElement.blur());
    await shot("status");

    // Graphs: keyboard to the tab (the tabs are buttons; 2 switches views).
    await page.keyboard.press("2");
    check(await page.locator("#tab-graphs").getAttribute("aria-selected") === "true", "key 2 opens Graphs");
    // Every chart of the latest choice drawn (one choice at a time: no renders left over from the last).
    const graphsDone = () => page.waitForSelector('#gr-charts[data-state="done"]');
    await graphsDone();
    await page.selectOption("#gr-range", "86400");
    await graphsDone();
    findings.graphs = {};
    for (const backend of backendList.split(",")) {
      await page.selectOption("#gr-backend", backend);
      await graphsDone();
      const fig = page.locator('figure[data-graph="golden.load.avg"]');
      await fig.locator("canvas").waitFor();
      await page.waitForFunction(() => document.querySelectorAll("#gr-list li").length > 0);
      // the canvas has drawn line pixels (polled by the page, every animation frame)
      await page.waitForFunction(`(${strokePixels})(document.querySelector('figure[data-graph="golden.load.avg"] canvas')) >= 30`,
        null, { timeout: 10000 }).catch(() => {});
      const pixels = await fig.locator("canvas").evaluate(strokePixels);
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
      await graphsDone();
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
    // The known metric with its registry type, unit and help, its labels and the backends holding it.
    const row = page.locator("#ca-table tbody tr").filter({ has: page.locator("td.mono", { hasText: new RegExp("^" + expect.metric + "$") }) });
    await row.waitFor();
    const cells = (await row.locator("td").allInnerTexts()).map((c) => c.trim());
    check(cells[1] === expect.type && cells[2] === (expect.unit || "") && cells[3] === (expect.help || ""),
      `catalog row of ${expect.metric}: type/unit/help ${JSON.stringify(cells.slice(1, 4))}`);
    const chips = await row.locator("button.chip").evaluateAll((bs) => bs.map((b) => b.dataset.label));
    check(chips.includes(expect.label), `label ${expect.label} among ${JSON.stringify(chips)}`);
    check(expect.backends.every((b) => cells[6].split(", ").includes(b)), `held by ${expect.backends}: ${cells[6]}`);
    findings.catalog = { row: cells, rows: await page.locator("#ca-table tbody tr").count(),
      source: await page.locator("#ca-source").innerText(), suggested: {} };

    // Typing: Tab into the filter, a part of the label name suggests "<label>=", ↓ Enter takes it,
    // then the values the backends hold are suggested.
    await page.keyboard.press("Tab");
    check(await page.evaluate(() => document.activeElement.id) === "ca-filter", "Tab from the tabs reaches the filter");
    await page.keyboard.type(expect.label.slice(0, 3));
    await page.waitForFunction((l) => [...document.querySelectorAll("#ca-suggest button")].some((b) => b.dataset.value === l + "="), expect.label);
    const labelSuggestions = await suggestions();
    await page.keyboard.press("ArrowDown");
    const firstSuggestion = await page.evaluate(() => document.activeElement.dataset.value);
    check(firstSuggestion === expect.label + "=", `↓ focuses the first suggestion ${firstSuggestion} (of ${labelSuggestions})`);
    await page.keyboard.press("Enter");
    check(await page.inputValue("#ca-filter") === expect.label + "=", "Enter puts the suggestion in the filter");
    await page.waitForFunction((l) => [...document.querySelectorAll("#ca-suggest button")].length > 0 &&
      [...document.querySelectorAll("#ca-suggest button")].every((b) => b.dataset.value.startsWith(l + "=") && b.dataset.value.length > l.length + 1), expect.label);
    const values = await suggestions();
    check(JSON.stringify(values) === JSON.stringify(expect.values.map((v) => expect.label + "=" + v)),
      `the suggested values of ${expect.label} ${JSON.stringify(values)} are the ones written ${JSON.stringify(expect.values)}`);
    findings.catalog.suggested[expect.label] = values;
    // One more character narrows them; ↓ Enter picks the value and the table keeps the metrics that have it.
    const pick = expect.values[1];
    await page.keyboard.type(pick.slice(-1));
    await page.waitForFunction((want) => {
      const shown = [...document.querySelectorAll("#ca-suggest button")].map((b) => b.dataset.value);
      return shown.includes(want);
    }, expect.label + "=" + pick);
    await page.keyboard.press("ArrowDown");
    await page.keyboard.press("Enter");
    check(await page.inputValue("#ca-filter") === expect.label + "=" + pick, "the value is picked");
    const kept = await page.locator("#ca-table tbody tr td.mono").allInnerTexts();
    check(kept.length === 1 && kept[0] === expect.metric, `filter ${expect.label}=${pick} keeps ${expect.metric}: ${kept}`);
    // The gauge's hosts: the golden ones and those of the load running now.
    await page.fill("#ca-filter", "host=");
    await page.waitForFunction((want) => {
      const shown = [...document.querySelectorAll("#ca-suggest button")].map((b) => b.dataset.value);
      return want.every((h) => shown.includes("host=" + h));
    }, expect.hosts, { timeout: 10000 }).catch(() => {});
    const hosts = await suggestions();
    check(expect.hosts.every((h) => hosts.includes("host=" + h)), `host values ${JSON.stringify(hosts)} hold ${expect.hosts}`);
    findings.catalog.suggested.host = hosts;
    findings.catalog.note = await page.locator("#ca-suggest-note").innerText();
    check(await overflow() <= 0, "no horizontal page overflow at 1280 px (catalog): " + await overflow());
    await shot("catalog");

    // Phone width: every view fits the width (tables scroll inside their box) and charts follow.
    await page.setViewportSize({ width: 390, height: 844 });
    findings.phone = {};
    for (const view of ["status", "graphs", "catalog"]) {
      await page.click("#tab-" + view);
      if (view === "status") await page.waitForSelector('[data-testid="rx-total-http"]');
      if (view === "graphs") await page.locator('figure[data-graph="golden.load.avg"] canvas').waitFor();
      const over = await overflow();
      findings.phone[view] = over;
      const wide = over > 0 ? await page.evaluate(() => [...document.querySelectorAll("body *")]
        .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest(".scroll"))
        .slice(0, 5).map((e) => e.tagName + "#" + e.id + "." + e.className + " " + Math.round(e.getBoundingClientRect().right))) : [];
      check(over <= 0, `no horizontal page overflow at 390 px in ${view}: ${over} px (${wide.join(", ")})`);
      await shot(view + "-phone");
    }
    await page.setViewportSize({ width: 1280, height: 800 });
  } else if (mode === "auth") {
    const key = arg;
    const challenges = [];
    page.on("response", (r) => { if (r.status() === 401) challenges.push(r.headers()["www-authenticate"] || ""); });
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
    findings.auth = { status: await page.locator("#st-ready").innerText(), challenges };
    await shot("auth-status");
    // the other views load with the key too
    await page.click("#tab-catalog");
    await page.locator("#ca-source", { hasText: "from the registry" }).waitFor();
    await page.click("#tab-graphs");
    await page.locator("#gr-caps", { hasText: /./ }).waitFor();
    check(await page.locator("#key-form").isHidden(), "no form in Graphs and Catalog with the key");
    // no answer the page saw asked for Basic auth (the browser would open its password prompt)
    check(challenges.length > 0 && challenges.every((c) => !/basic/i.test(c)), "401s challenge Bearer only: " + JSON.stringify(challenges));
  } else {
    throw new Error("unknown mode " + mode);
  }

  // Console errors after load: only HTTP answers the page expects and handles
  // (422 from compile for a graph a backend cannot serve, 401 before the key).
  const expected = (e) => /Failed to load resource: the server responded with a status of (422|401)/.test(e.text) &&
    (/\/api\/v1\/graph\/compile$/.test(e.url) || (mode === "auth" && /\/api\/v1\//.test(e.url)));
  const unexpected = errors.filter((e) => !expected(e));
  check(unexpected.length === 0, "console errors: " + JSON.stringify(unexpected));
  check(foreign.length === 0, "requests to other origins: " + foreign.join(", "));
  findings.expected_http_errors = errors.length;
  console.log(JSON.stringify(findings));
} catch (e) {
  try { await shot("failure-" + mode); } catch (_) { /* ignore */ }
  console.error(e.stack || String(e));
  console.error("console errors seen: " + JSON.stringify(errors));
  console.error("5xx answers: " + JSON.stringify(failedAnswers, null, 1));
  process.exitCode = 1;
} finally {
  await browser.close();
}

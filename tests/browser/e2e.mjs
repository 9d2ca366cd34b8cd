// End-to-end test of the doctor's page in a real browser (Debian's Chromium,
// headless, driven by playwright-core). Run by tests/browser.rs, which starts the
// server and writes the fixtures:
//
//   node tests/browser/e2e.mjs BASE_URL OUT_DIR
//
// OUT_DIR holds hand1.png, hand2.png (synthetic hands) and not-a-hand.png; the
// screenshots are written there and their paths printed. Exit code 0 = passed.

import { chromium } from "playwright-core";
import { TEXT } from "../../web/i18n.js";
import path from "node:path";
import fs from "node:fs";

const [base, out] = process.argv.slice(2);
if (!base || !out) {
  console.error("usage: node e2e.mjs BASE_URL OUT_DIR");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const userDataDir = fs.mkdtempSync(path.join(out, "profile-"));

let failures = 0;
function check(cond, what) {
  if (cond) {
    console.log(`ok - ${what}`);
  } else {
    failures += 1;
    console.log(`not ok - ${what}`);
  }
}
const eq = (a, b, what) => check(a === b, `${what}: shown ${JSON.stringify(a)}, API ${JSON.stringify(b)}`);

const browser = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  locale: "en-US",
  viewport: { width: 1280, height: 900 },
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const timeout = 60_000;
let page;
try {
  page = browser.pages()[0] || (await browser.newPage());
  page.setDefaultTimeout(timeout);
  const consoleErrors = [];
  // The refusal of the non-hand is a 422 that Chromium reports as a failed load.
  const expected = (text) => text.includes("status of 422");
  page.on("console", (m) => m.type() === "error" && !expected(m.text()) && consoleErrors.push(m.text()));
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  const offOrigin = [];
  page.on("request", (r) => {
    const u = r.url();
    if (!u.startsWith(base) && !u.startsWith("blob:") && !u.startsWith("data:")) offOrigin.push(u);
  });

  // 1. Empty page, English (the browser asks for English).
  await page.goto(base + "/");
  await page.waitForSelector("body[data-ready=true]");
  eq(await page.textContent("h1"), TEXT.en.title, "English title");
  check(await page.isHidden("#result"), "no result before an upload");

  // 2. A new patient.
  await page.fill("#external-id", "E2E-0001");
  await page.click("#find-patient");
  await page.waitForSelector("#create-form:not([hidden])");
  await page.selectOption("#new-sex", "female");
  await page.fill("#new-birth", "2016-05-01");
  await page.fill("#new-name", "Test Child");
  await page.click("#create-patient");
  await page.waitForSelector("#patient-card:not([hidden])");
  check((await page.textContent("#patient-summary")).includes("E2E-0001"), "patient selected");
  check(await page.isDisabled("#sex"), "sex comes from the record");

  // 3. Exam 1.
  async function upload(file, examDate, height) {
    const before = await page.getAttribute("#result", "data-analysis-id");
    await page.setInputFiles("#file", path.join(out, file));
    await page.waitForSelector("#thumb:not([hidden])");
    await page.fill("#exam-date", examDate);
    await page.fill("#height", height);
    await page.click("#analyse");
    await page.waitForFunction(
      (b) => {
        const r = document.getElementById("result");
        const err = document.getElementById("exam-error");
        return (!r.hidden && r.dataset.analysisId && r.dataset.analysisId !== b) || !err.hidden;
      },
      before,
    );
    check(await page.isHidden("#exam-error"), `${file} analysed without an error`);
    return page.getAttribute("#result", "data-analysis-id");
  }

  async function compareWithApi(id) {
    const r = await page.evaluate(async (id) => (await fetch(`/v1/analyses/${id}`)).json(), id);
    const shown = async (sel) => (await page.textContent(sel)).trim();
    eq(await shown("#r-bone-age .num"), r.bone_age.months.toFixed(1), "bone age (months)");
    eq(await shown("#r-interval-lo"), r.bone_age.interval_90[0].toFixed(1), "90% interval, low");
    eq(await shown("#r-interval-hi"), r.bone_age.interval_90[1].toFixed(1), "90% interval, high");
    eq(await shown("#r-ca .num"), r.chronological_age_months.toFixed(1), "chronological age");
    const diff = r.bone_age.months - r.chronological_age_months;
    eq(await shown("#r-diff .num"), (diff > 0 ? "+" : "") + diff.toFixed(1), "bone age − age");
    if (r.bone_age_sds !== null) {
      eq(await shown("#r-sds .num"), (r.bone_age_sds > 0 ? "+" : "") + r.bone_age_sds.toFixed(2), "SDS");
    }
    eq(await shown("#r-tw3-score .num"), String(r.tw3.rus_score), "TW3 RUS score");
    if (r.tw3.rus_bone_age_months !== null) {
      eq(await shown("#r-tw3-ba .num"), r.tw3.rus_bone_age_months.toFixed(1), "TW3 RUS bone age");
    }
    const marks = await page.$$eval("#overlay g.joint", (gs) =>
      gs.map((g) => ({
        bone: g.dataset.bone,
        label: g.querySelector("text .stage-score").textContent,
        x: Number(g.querySelector("circle,rect").getAttribute(g.querySelector("circle") ? "cx" : "x")),
      })),
    );
    eq(marks.length, r.joints.filter((j) => j.location).length, "outlined joints = located joints");
    const unlocated = await page.$$eval("#unlocated li", (lis) =>
      lis.map((li) => ({ bone: li.dataset.bone, label: li.querySelector(".label").textContent })),
    );
    eq(unlocated.length, r.joints.filter((j) => !j.location).length, "joints listed as not located");
    check(marks.length >= 12, `at least 12 joints outlined (${marks.length})`);
    eq(marks.length + unlocated.length, 13, "13 joints labelled");
    const vb = await page.getAttribute("#overlay", "viewBox");
    eq(vb, `0 0 ${r.input.width} ${r.input.height}`, "overlay in the upload's pixels");
    const rows = await page.$$eval("#joints tbody tr", (trs) =>
      trs.map((tr) => ({
        bone: tr.dataset.bone,
        stage: tr.querySelector(".stage").textContent,
        score: tr.querySelector(".score").textContent,
      })),
    );
    eq(rows.length, 13, "joint table rows");
    r.joints.forEach((j, i) => {
      eq(rows[i]?.bone, j.bone, `joint ${i} bone`);
      eq(rows[i]?.stage, j.stage, `${j.bone} stage`);
      eq(rows[i]?.score, String(j.tw3_score), `${j.bone} score`);
      const m = marks.find((m) => m.bone === j.bone) || unlocated.find((m) => m.bone === j.bone);
      eq(m?.label, `${j.stage}·${j.tw3_score}`, `${j.bone} label on the image`);
    });
    return r;
  }

  const id1 = await upload("hand1.png", "2025-11-01", "128.5");
  const r1 = await compareWithApi(id1);
  check(r1.patient_id !== null, "exam 1 filed under the patient");

  // Keyboard: Tab onto a joint shows its details.
  await page.focus("#overlay g.joint");
  const detail = await page.textContent("#joint-detail-text");
  check(detail.includes(TEXT.en.col_stage) && detail.includes(r1.joints[0].stage), `joint details on focus: ${detail}`);

  // 4. Exam 2 a year later: two exams, growth chart.
  const id2 = await upload("hand2.png", "2026-11-01", "134.0");
  check(id2 !== id1, "a second analysis");
  await compareWithApi(id2);
  await page.waitForFunction(() => document.querySelectorAll("#exams tbody tr").length === 2);
  check(true, "2 exams in the history table");
  await page.waitForFunction(() => {
    const img = document.getElementById("growth");
    return !img.hidden && img.complete && img.naturalWidth > 0;
  });
  check(true, "growth chart shown");
  await page.click("#open-report");
  await page.waitForSelector("#report:not([hidden])");
  const frame = page.frameLocator("#report");
  await frame.locator("h1").waitFor();
  check((await frame.locator("h1").textContent()).includes("Bone-age report"), "printable report shown");

  const shotEn = path.join(out, "doctor-page-en.png");
  await page.screenshot({ path: shotEn, fullPage: true });
  console.log(`screenshot: ${shotEn}`);

  // 5. Chinese.
  await page.click("#lang-switch");
  eq(await page.textContent("h1"), TEXT.zh.title, "Chinese title");
  eq(await page.getAttribute("html", "lang"), "zh-CN", "html lang");
  eq((await page.textContent("#joints thead th:nth-child(2)")).trim(), TEXT.zh.col_stage, "Chinese column header");
  eq((await page.textContent("#joints tbody tr th")).trim(), "桡骨", "Chinese bone name");
  await frame.locator("html[lang^=zh]").waitFor({ state: "attached" });
  check(true, "report in Chinese");
  await page.waitForFunction(() => document.getElementById("growth").naturalWidth > 0);
  const shotZh = path.join(out, "doctor-page-zh.png");
  await page.screenshot({ path: shotZh, fullPage: true });
  console.log(`screenshot: ${shotZh}`);

  // 6. A rejection, in the doctor's words (Chinese, then English).
  await page.setInputFiles("#file", path.join(out, "not-a-hand.png"));
  await page.waitForSelector("#thumb:not([hidden])");
  await page.click("#analyse");
  await page.waitForSelector("#exam-error:not([hidden])");
  eq((await page.textContent("#error-code")).trim(), "not_a_hand", "rejection code");
  check((await page.textContent("#error-message")).includes(TEXT.zh.errors.not_a_hand), "rejection message in Chinese");
  await page.locator("#exam").screenshot({ path: path.join(out, "rejection-zh.png") });
  console.log(`screenshot: ${path.join(out, "rejection-zh.png")}`);
  await page.click("#lang-switch");
  check((await page.textContent("#error-message")).includes(TEXT.en.errors.not_a_hand), "rejection message in English");
  eq(await page.locator("#exams tbody tr").count(), 2, "a rejected image files no exam");

  check(offOrigin.length === 0, `no request leaves the origin (${offOrigin.join(", ")})`);
  check(consoleErrors.length === 0, `no console errors (${consoleErrors.join(" | ")})`);

  // 7. Chinese first when the browser asks for it.
  const zhPage = await browser.newPage();
  await zhPage.setExtraHTTPHeaders({ "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8" });
  await zhPage.addInitScript(() => {
    Object.defineProperty(navigator, "languages", { get: () => ["zh-CN", "zh", "en"] });
  });
  await zhPage.goto(base + "/");
  await zhPage.waitForSelector("body[data-ready=true]");
  eq(await zhPage.textContent("h1"), TEXT.zh.title, "Chinese first for a Chinese browser");
  await zhPage.close();

  // 8. A DICOM file, anonymous: the header fills sex and dates (marked "from
  // DICOM"), the preview comes from the server, the age is from the header's dates.
  const dp = await browser.newPage();
  dp.setDefaultTimeout(timeout);
  await dp.goto(base + "/");
  await dp.waitForSelector("body[data-ready=true]");
  await dp.click("#anonymous");
  await dp.setInputFiles("#file", path.join(out, "hand.dcm"));
  await dp.waitForSelector("#thumb:not([hidden])");
  eq(await dp.inputValue("#sex"), "female", "sex from the DICOM header");
  eq(await dp.inputValue("#birth-date"), "2016-05-01", "birth date from the DICOM header");
  eq(await dp.inputValue("#exam-date"), "2026-11-20", "exam date from the DICOM header");
  eq(
    (await dp.textContent('[data-badge-for="birth_date"]')).trim(),
    TEXT.en.from_dicom,
    "marked as from DICOM",
  );
  check(await dp.evaluate(() => document.getElementById("thumb").naturalWidth > 0), "DICOM preview shown");
  await dp.click("#analyse");
  await dp.waitForSelector("#result:not([hidden])");
  const dicomId = await dp.getAttribute("#result", "data-analysis-id");
  const rd = await dp.evaluate(async (id) => (await fetch(`/v1/analyses/${id}`)).json(), dicomId);
  eq((await dp.textContent("#r-ca .num")).trim(), rd.chronological_age_months.toFixed(1), "DICOM exam: age from the header's dates");
  eq((await dp.textContent("#r-bone-age .num")).trim(), rd.bone_age.months.toFixed(1), "DICOM exam: bone age");
  check(rd.source.fields.some((f) => f.field === "birth_date"), "the API used the birth date");
  await dp.close();

  // 9. A server with tokens: the page asks for one, refuses a wrong one, then works.
  const tokenBase = process.env.TOKEN_BASE;
  if (tokenBase) {
    const tp = await browser.newPage();
    await tp.goto(tokenBase + "/");
    await tp.waitForSelector("#token-form:not([hidden])");
    check(true, "sign-in form shown where tokens are configured");
    await tp.fill("#token", "bat_wrong");
    await tp.click("#token-form button[type=submit]");
    await tp.waitForSelector("#token-error:not([hidden])");
    check(true, "a wrong token is refused");
    await tp.fill("#token", process.env.TOKEN);
    await tp.click("#token-form button[type=submit]");
    await tp.waitForSelector("#token-form[hidden]", { state: "attached" });
    await tp.fill("#external-id", "TOKEN-1");
    await tp.click("#find-patient");
    await tp.waitForSelector("#create-form:not([hidden])");
    check(await tp.isHidden("#patient-error"), "signed in: the API answers with the token");
    await tp.close();
  }
} catch (e) {
  failures += 1;
  console.log(`not ok - ${e.stack || e}`);
  if (page) {
    const p = path.join(out, "failure.png");
    await page.screenshot({ path: p, fullPage: true }).catch(() => {});
    console.log(`screenshot: ${p}`);
  }
} finally {
  await browser.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
console.log(failures === 0 ? "e2e: all checks passed" : `e2e: ${failures} check(s) failed`);
process.exit(failures === 0 ? 0 : 1);

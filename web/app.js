// The doctor's page: plain ES module, no framework, no network but this origin.
// Everything it shows comes from the service's own API (see README, "API (v1)").

import { TEXT, LANGS, preferredLang, boneName, boneShort } from "/assets/i18n.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

const state = {
  lang: preferredLang(navigator.languages),
  token: sessionStorage.getItem("boneage.token") || "",
  patient: null,
  file: null, // { file, isDicom, url, fromDicom: Set }
  result: null,
  growthUrl: null,
  reportUrl: null,
};

const t = (key) => TEXT[state.lang][key] ?? TEXT.en[key] ?? key;

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(code, detail, status) {
    super(detail || code);
    this.code = code;
    this.detail = detail || "";
    this.status = status;
  }
}

async function api(path, opts = {}) {
  const headers = new Headers(opts.headers || {});
  if (state.token) headers.set("Authorization", `Bearer ${state.token}`);
  let res;
  try {
    res = await fetch(path, { ...opts, headers, cache: "no-store" });
  } catch (e) {
    throw new ApiError("network", String(e), 0);
  }
  if (res.ok) return res;
  let body = {};
  try {
    body = await res.json();
  } catch (_) {
    /* not problem+json */
  }
  if (res.status === 401) showTokenForm(Boolean(state.token));
  throw new ApiError(body.code || "unknown", body.detail || res.statusText, res.status);
}

const apiJson = async (path, opts) => (await api(path, opts)).json();

function errorText(err) {
  const msgs = t("errors");
  return msgs[err.code] || TEXT.en.errors[err.code] || msgs.unknown;
}

// ---------------------------------------------------------------- language

function applyLang() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  for (const el of document.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n);
  }
  const sw = $("lang-switch");
  sw.textContent = t("switch_lang");
  sw.lang = state.lang === "zh" ? "en" : "zh-CN";
  sw.setAttribute("aria-label", t("switch_lang_label"));
  $("growth").alt = t("growth_alt");
  $("report").title = t("report_title");
  for (const b of document.querySelectorAll("[data-badge-for]")) {
    if (b.dataset.from) b.textContent = t(b.dataset.from);
  }
  if (state.file) $("file-name").textContent = state.file.file.name;
  if (state.patient) showPatient(state.patient);
  if (state.result) renderResult(state.result);
  if (state.lastError) showError(state.lastError);
}

async function switchLang() {
  state.lang = state.lang === "zh" ? "en" : "zh";
  applyLang();
  if (state.patient) await loadHistory().catch(showError);
  if (state.reportUrl) await openReport().catch(showError);
}

// ---------------------------------------------------------------- token

function showTokenForm(bad) {
  $("token-form").hidden = false;
  $("token-error").hidden = !bad;
  $("token").focus();
}

async function saveToken(ev) {
  ev.preventDefault();
  state.token = $("token").value.trim();
  sessionStorage.setItem("boneage.token", state.token);
  try {
    await api("/v1/patients?external_id=");
    $("token-form").hidden = true;
    $("token").value = "";
    $("token-forget").hidden = false;
  } catch (e) {
    if (e.code !== "unauthorized") showError(e);
  }
}

function forgetToken() {
  state.token = "";
  sessionStorage.removeItem("boneage.token");
  $("token-forget").hidden = true;
  showTokenForm(false);
}

// ---------------------------------------------------------------- patient

function showPatientError(err) {
  const p = $("patient-error");
  p.textContent = err ? `${errorText(err)} (${err.detail})` : "";
  p.hidden = !err;
}

async function findPatient(ev) {
  ev.preventDefault();
  showPatientError(null);
  const ext = $("external-id").value.trim();
  if (!ext) return;
  try {
    const list = await apiJson(`/v1/patients?external_id=${encodeURIComponent(ext)}`);
    if (list.patients.length) {
      await selectPatient(list.patients[0]);
    } else {
      $("create-form").hidden = false;
      $("new-sex").focus();
    }
  } catch (e) {
    showPatientError(e);
  }
}

async function createPatient(ev) {
  ev.preventDefault();
  showPatientError(null);
  const body = {
    external_id: $("external-id").value.trim(),
    sex: $("new-sex").value,
    birth_date: $("new-birth").value,
  };
  const name = $("new-name").value.trim();
  if (name) body.name = name;
  try {
    const p = await apiJson("/v1/patients", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    await selectPatient(p);
  } catch (e) {
    showPatientError(e);
  }
}

function showPatient(p) {
  const sex = t(p.sex);
  const parts = [p.external_id, sex, p.birth_date];
  if (p.name) parts.push(p.name);
  $("patient-summary").textContent = parts.join(" · ");
}

async function selectPatient(p) {
  state.patient = p;
  $("find-form").hidden = true;
  $("create-form").hidden = true;
  $("patient-card").hidden = false;
  showPatient(p);
  // The record gives sex and birth date; age comes from the dates.
  setField("sex", p.sex, "from_patient");
  setField("birth_date", p.birth_date, "from_patient");
  $("sex").disabled = true;
  $("birth-date").disabled = true;
  $("age-years").disabled = true;
  $("age-years").value = "";
  $("history").hidden = false;
  await loadHistory().catch(showError);
}

function clearPatient() {
  state.patient = null;
  $("find-form").hidden = false;
  $("patient-card").hidden = true;
  $("history").hidden = true;
  for (const id of ["sex", "birth-date", "age-years"]) $(id).disabled = false;
  setField("sex", "", null);
  setField("birth_date", "", null);
  $("external-id").focus();
}

// ---------------------------------------------------------------- form fields

const FIELD_IDS = { sex: "sex", birth_date: "birth-date", exam_date: "exam-date" };

/// Sets a form field and marks where its value came from (null: typed by hand).
function setField(name, value, from) {
  $(FIELD_IDS[name]).value = value || "";
  const badge = document.querySelector(`[data-badge-for="${name}"]`);
  if (from && value) {
    badge.dataset.from = from;
    badge.textContent = t(from);
    badge.hidden = false;
  } else {
    delete badge.dataset.from;
    badge.hidden = true;
  }
}

function unmarkOnEdit(name) {
  $(FIELD_IDS[name]).addEventListener("input", () => {
    const badge = document.querySelector(`[data-badge-for="${name}"]`);
    if (badge.dataset.from === "from_dicom") {
      delete badge.dataset.from;
      badge.hidden = true;
    }
  });
}

// ---------------------------------------------------------------- file

async function isDicomFile(file) {
  const head = new Uint8Array(await file.slice(0, 132).arrayBuffer());
  return head.length === 132 && String.fromCharCode(...head.slice(128)) === "DICM";
}

async function chooseFile(file) {
  if (!file) return;
  clearError();
  if (state.file?.url) URL.revokeObjectURL(state.file.url);
  state.file = { file, isDicom: await isDicomFile(file), url: null };
  $("file-name").textContent = file.name;
  const thumb = $("thumb");
  thumb.hidden = true;
  const viewable = /^image\/(png|jpeg)$/.test(file.type) && !state.file.isDicom;
  try {
    if (state.file.isDicom) {
      busy(t("reading_dicom"));
      const h = await apiJson("/v1/dicom/header", {
        method: "POST",
        headers: { "Content-Type": "application/dicom" },
        body: file,
      });
      if (!state.patient) {
        if (h.sex) setField("sex", h.sex, "from_dicom");
        if (h.birth_date) setField("birth_date", h.birth_date, "from_dicom");
      }
      if (h.exam_date) setField("exam_date", h.exam_date, "from_dicom");
      if (h.patient_id && !state.patient && !$("external-id").value) {
        $("external-id").value = h.patient_id;
      }
    }
    if (viewable) {
      state.file.url = URL.createObjectURL(file);
    } else {
      const res = await api("/v1/preview", {
        method: "POST",
        headers: { "Content-Type": "application/octet-stream" },
        body: file,
      });
      state.file.url = URL.createObjectURL(await res.blob());
    }
    thumb.src = state.file.url;
    thumb.alt = file.name;
    thumb.hidden = false;
  } catch (e) {
    showError(e);
  } finally {
    busy(null);
  }
}

function setupDrop() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => chooseFile(e.target.files[0]));
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    const f = e.dataTransfer?.files?.[0];
    if (f) chooseFile(f);
  });
}

// ---------------------------------------------------------------- analysis

function busy(text) {
  $("busy").hidden = !text;
  $("busy-text").textContent = text || "";
  $("analyse").disabled = Boolean(text);
  $("exam-form").setAttribute("aria-busy", text ? "true" : "false");
}

function clearError() {
  state.lastError = null;
  $("exam-error").hidden = true;
}

function showError(err) {
  state.lastError = err;
  $("error-message").textContent = `${t("err_prefix")}${errorText(err)}`;
  $("error-detail").textContent = err.detail || "";
  $("error-code").textContent = err.code || "";
  $("exam-error").hidden = false;
}

const today = () => new Date().toISOString().slice(0, 10);

async function analyse(ev) {
  ev.preventDefault();
  clearError();
  if (!state.file) {
    showError(new ApiError("missing_image", t("need_file"), 0));
    return;
  }
  const form = new FormData();
  const put = (k, v) => {
    if (v !== "" && v !== null && v !== undefined) form.append(k, String(v));
  };
  const examDate = $("exam-date").value;
  if (state.patient) {
    put("patient_id", state.patient.id);
    put("exam_date", examDate);
  } else {
    const sex = $("sex").value;
    if (!sex && !state.file.isDicom) {
      showError(new ApiError("missing_field", t("need_sex"), 0));
      return;
    }
    put("sex", sex);
    const birth = $("birth-date").value;
    if (birth) {
      put("birth_date", birth);
      put("exam_date", examDate || (state.file.isDicom ? "" : today()));
    } else if ($("age-years").value) {
      put("chronological_age_months", (Number($("age-years").value) * 12).toFixed(2));
    } else {
      put("exam_date", examDate);
    }
  }
  put("height_cm", $("height").value);
  put("weight_kg", $("weight").value);
  put("mother_height_cm", $("mother-height").value);
  put("father_height_cm", $("father-height").value);
  form.append("image", state.file.file, state.file.file.name);

  busy(t("working"));
  try {
    const r = await apiJson("/v1/analyses", { method: "POST", body: form });
    state.result = r;
    state.selected = null;
    renderResult(r);
    $("result").hidden = false;
    $("result").scrollIntoView({ block: "start" });
    if (state.patient) await loadHistory();
  } catch (e) {
    showError(e);
  } finally {
    busy(null);
  }
}

// ---------------------------------------------------------------- formatting

const num = (v, d) => (v === null || v === undefined ? null : Number(v).toFixed(d));

function ageWords(months) {
  const total = Math.round(Math.abs(months));
  const y = Math.floor(total / 12);
  const m = total % 12;
  return state.lang === "zh" ? `${y} 岁 ${m} 月` : `${y} y ${m} mo`;
}

/// `<span class="num">180.5</span> mo (15 y 0 mo)`: the number alone in its span.
function months(el, value, signed = false) {
  el.replaceChildren();
  if (value === null || value === undefined) {
    el.textContent = t("not_available");
    return;
  }
  const span = document.createElement("span");
  span.className = "num";
  span.textContent = (signed && value > 0 ? "+" : "") + num(value, 1);
  el.append(span, ` ${t("months")} (${signed && value < 0 ? "−" : ""}${ageWords(value)})`);
}

function plain(el, text, cls = "num") {
  el.replaceChildren();
  const span = document.createElement("span");
  span.className = cls;
  span.textContent = text;
  el.append(span);
  return el;
}

function basisShort(b) {
  return t(`basis_${b}`) === `basis_${b}` ? b : t(`basis_${b}`);
}

function basisLong(b) {
  const k = `basis_${b}_long`;
  return TEXT[state.lang][k] || t("basis_unknown_long");
}

// ---------------------------------------------------------------- result

function renderResult(r) {
  $("result").dataset.analysisId = r.id;
  months($("r-bone-age"), r.bone_age.months);
  const iv = $("r-interval");
  iv.replaceChildren();
  const lo = plain(document.createElement("span"), num(r.bone_age.interval_90[0], 1));
  const hi = plain(document.createElement("span"), num(r.bone_age.interval_90[1], 1));
  lo.id = "r-interval-lo";
  hi.id = "r-interval-hi";
  iv.append(lo, " – ", hi, ` ${t("months")}`);
  months($("r-ca"), r.chronological_age_months);
  const diff =
    r.chronological_age_months === null ? null : r.bone_age.months - r.chronological_age_months;
  months($("r-diff"), diff, true);
  if (r.bone_age_sds === null) {
    $("r-sds").textContent = `${t("not_available")} (${r.bone_age_sds_detail?.reason ?? ""})`;
  } else {
    plain($("r-sds"), (r.bone_age_sds > 0 ? "+" : "") + num(r.bone_age_sds, 2));
    if (r.bone_age_sds_detail?.reference?.interpolated) {
      $("r-sds").append(` (${t("interpolated")})`);
    }
  }
  plain($("r-tw3-score"), String(r.tw3.rus_score));
  if (r.tw3.rus_bone_age_months === null) {
    $("r-tw3-ba").textContent = `${t("not_available")} (${r.tw3.rus_bone_age_reason ?? ""})`;
  } else {
    months($("r-tw3-ba"), r.tw3.rus_bone_age_months);
  }
  $("r-model").textContent = `${r.model.name} ${r.model.version}`;
  renderOverlay(r);
  renderJointTable(r);
  renderQuality(r.quality);
  if (state.selected !== null && state.selected !== undefined) selectJoint(state.selected);
}

function jointLabel(j) {
  return `${boneName(j.bone, state.lang)}: ${t("col_stage")} ${j.stage}, ${t("col_score")} ${j.tw3_score}`;
}

function jointDetail(j) {
  const p = (j.stage_probability * 100).toFixed(0);
  return (
    `${boneName(j.bone, state.lang)} — ${t("col_stage")} ${j.stage}, ` +
    `${t("col_probability")} ${p}%, ${t("col_score")} ${j.tw3_score}. ` +
    `${basisShort(j.stage_basis)}: ${basisLong(j.stage_basis)}`
  );
}

function selectJoint(i) {
  state.selected = i;
  const j = state.result.joints[i];
  $("joint-detail-text").textContent = jointDetail(j);
  for (const el of document.querySelectorAll("[data-joint]")) {
    el.classList.toggle("selected", Number(el.dataset.joint) === i);
  }
}

function svg(tag, attrs = {}, parent = null) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (parent) parent.append(el);
  return el;
}

function renderOverlay(r) {
  const { width: W, height: H } = r.input;
  const box = $("xray-box");
  box.replaceChildren();
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    id: "overlay",
    role: "group",
    "aria-label": t("image_caption"),
  });
  if (state.file?.url) {
    svg("image", { href: state.file.url, x: 0, y: 0, width: W, height: H, preserveAspectRatio: "none" }, root);
  } else {
    svg("rect", { x: 0, y: 0, width: W, height: H, class: "no-image" }, root);
  }
  const s = Math.max(W, H);
  const rad = s * 0.024;
  const font = s * 0.019;
  // Metacarpal and proximal-phalanx epiphyses share a joint (MCP): one place, so
  // their labels are stacked.
  const mc3 = r.joints.find((j) => j.bone === "mc3" && j.location);
  const midX = mc3 ? mc3.location.x : W * 0.4;
  const at = (j) => `${j.location.x},${j.location.y}`;
  const groups = new Map();
  for (const j of r.joints) if (j.location) groups.set(at(j), [...(groups.get(at(j)) || []), j.bone]);
  r.joints.forEach((j, i) => {
    if (!j.location) return;
    const { x, y } = j.location;
    const group = groups.get(at(j));
    const k = group.indexOf(j.bone);
    const dy = (k - (group.length - 1) / 2) * font * 1.15;
    const g = svg("g", {
      class: `joint basis-${j.stage_basis}`,
      tabindex: 0,
      role: "button",
      "data-joint": i,
      "data-bone": j.bone,
      "aria-label": jointLabel(j),
    }, root);
    svg("title", {}, g).textContent = jointDetail(j);
    if (j.stage_basis === "typical_for_bone_age") {
      svg("rect", { x: x - rad, y: y - rad, width: 2 * rad, height: 2 * rad, class: "mark" }, g);
    } else {
      svg("circle", { cx: x, cy: y, r: rad, class: "mark" }, g);
    }
    // Labels point away from the middle ray: left of the joints on the side of the
    // little finger in a left hand (right of them in a mirrored one).
    const left = x < midX - rad;
    const label = svg("text", {
      x: left ? x - rad * 1.2 : x + rad * 1.2,
      y: y + dy + font * 0.35,
      "font-size": font,
      "text-anchor": left ? "end" : "start",
      class: "label",
    }, g);
    svg("tspan", { class: "bone" }, label).textContent = `${boneShort(j.bone, state.lang)} `;
    svg("tspan", { class: "stage-score" }, label).textContent = `${j.stage}·${j.tw3_score}`;
    g.addEventListener("focus", () => selectJoint(i));
    g.addEventListener("click", () => selectJoint(i));
    g.addEventListener("mouseenter", () => selectJoint(i));
    g.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        selectJoint(i);
      }
    });
  });
  box.append(root);
  // Joints the model does not locate (the default model: MC I, whose epiphysis has
  // no annotated region) are listed, never drawn at a guessed place.
  const list = $("unlocated");
  list.replaceChildren();
  for (const j of r.joints.filter((j) => !j.location)) {
    const li = document.createElement("li");
    li.dataset.bone = j.bone;
    const label = document.createElement("span");
    label.className = "num label";
    label.textContent = `${j.stage}·${j.tw3_score}`;
    li.append(`${boneName(j.bone, state.lang)}: `, label, ` — ${basisShort(j.stage_basis)}`);
    list.append(li);
  }
  $("unlocated-box").hidden = list.children.length === 0;
}

function renderJointTable(r) {
  const body = $("joints").tBodies[0];
  body.replaceChildren();
  r.joints.forEach((j, i) => {
    const tr = document.createElement("tr");
    tr.dataset.joint = i;
    tr.dataset.bone = j.bone;
    const cells = [
      boneName(j.bone, state.lang),
      j.stage,
      `${(j.stage_probability * 100).toFixed(0)}%`,
      String(j.tw3_score),
      basisShort(j.stage_basis),
    ];
    const classes = ["bone", "stage", "prob", "score", "basis"];
    cells.forEach((c, k) => {
      const td = document.createElement(k === 0 ? "th" : "td");
      if (k === 0) {
        td.scope = "row";
        const b = document.createElement("button");
        b.type = "button";
        b.className = "link";
        b.textContent = c;
        b.addEventListener("click", () => selectJoint(i));
        td.append(b);
      } else {
        td.textContent = c;
      }
      td.classList.add(classes[k]);
      tr.append(td);
    });
    body.append(tr);
  });
  const notes = $("basis-notes");
  notes.replaceChildren();
  for (const b of r.tw3.stage_bases) {
    const p = document.createElement("p");
    const strong = document.createElement("strong");
    strong.textContent = `${basisShort(b)}: `;
    p.append(strong, basisLong(b));
    notes.append(p);
  }
}

function renderQuality(q) {
  const dl = $("quality");
  dl.replaceChildren();
  const row = (k, v) => {
    const dt = document.createElement("dt");
    dt.textContent = t(k);
    const dd = document.createElement("dd");
    dd.textContent = v;
    dl.append(dt, dd);
  };
  row("decision", q.decision === "accepted" ? t("accepted") : q.decision);
  const e = q.exposure;
  row("exposure", `${e.p01.toFixed(3)} / ${e.p99.toFixed(3)} / ${e.mean.toFixed(3)}`);
  if (q.shape) {
    row("shape_residual", `${q.shape.residual.toFixed(3)} (≤ ${q.shape.max_residual.toFixed(3)})`);
    row("model_sd", `${q.shape.sd_months.toFixed(1)} (≤ ${q.shape.max_sd_months.toFixed(1)})`);
  } else {
    row("shape_residual", t("not_checked"));
  }
  const c = [];
  if (q.corrections.inverted) c.push(t("inverted"));
  if (q.corrections.mirrored) c.push(t("mirrored"));
  if (q.corrections.rotation_deg) c.push(`${t("rotated")} ${q.corrections.rotation_deg.toFixed(0)}°`);
  row("corrections", c.length ? c.join(", ") : t("none"));
  row("passes", String(q.passes));
  row("laterality", q.laterality ? t(q.laterality) : t("not_available"));
}

// ---------------------------------------------------------------- history

async function loadHistory() {
  const id = encodeURIComponent(state.patient.id);
  const list = await apiJson(`/v1/patients/${id}/exams`);
  const body = $("exams").tBodies[0];
  body.replaceChildren();
  for (const e of list.exams) {
    const tr = document.createElement("tr");
    tr.dataset.analysis = e.analysis_id;
    const cells = [
      e.exam_date ?? "",
      e.chronological_age_months === null ? "" : ageWords(e.chronological_age_months),
      `${num(e.bone_age_months, 1)} ${t("months")}`,
      e.interval_90 ? `${num(e.interval_90[0], 1)} – ${num(e.interval_90[1], 1)}` : "",
      e.bone_age_sds === null ? "" : num(e.bone_age_sds, 2),
      e.tw3_rus_score ?? "",
      e.height_cm === null ? "" : num(e.height_cm, 1),
    ];
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = String(c);
      tr.append(td);
    }
    body.append(tr);
  }
  const svgRes = await api(`/v1/patients/${id}/growth.svg?lang=${state.lang}`);
  if (state.growthUrl) URL.revokeObjectURL(state.growthUrl);
  state.growthUrl = URL.createObjectURL(await svgRes.blob());
  const img = $("growth");
  img.src = state.growthUrl;
  img.hidden = false;
  $("open-report").disabled = !(state.result && state.result.patient_id === state.patient.id);
}

async function openReport() {
  if (!state.result) return;
  const res = await api(
    `/v1/analyses/${encodeURIComponent(state.result.id)}/report.html?lang=${state.lang}`,
  );
  const html = await res.blob();
  if (state.reportUrl) URL.revokeObjectURL(state.reportUrl);
  state.reportUrl = URL.createObjectURL(new Blob([html], { type: "text/html" }));
  const frame = $("report");
  frame.src = state.reportUrl;
  frame.hidden = false;
  $("print-report").hidden = false;
}

// ---------------------------------------------------------------- start

function init() {
  applyLang();
  $("lang-switch").addEventListener("click", switchLang);
  $("token-form").addEventListener("submit", saveToken);
  $("token-forget").addEventListener("click", forgetToken);
  $("find-form").addEventListener("submit", findPatient);
  $("create-form").addEventListener("submit", createPatient);
  $("change-patient").addEventListener("click", clearPatient);
  $("anonymous").addEventListener("click", () => {
    $("create-form").hidden = true;
    $("file").focus();
  });
  $("exam-form").addEventListener("submit", analyse);
  $("open-report").addEventListener("click", () => openReport().catch(showError));
  $("print-report").addEventListener("click", () => $("report").contentWindow?.print());
  $("print-page").addEventListener("click", () => window.print());
  for (const f of ["sex", "birth_date", "exam_date"]) unmarkOnEdit(f);
  setupDrop();
  if (state.token) $("token-forget").hidden = false;
  // Tells whether this server needs a token (a 401 shows the sign-in form).
  api("/v1/patients?external_id=").catch(() => {});
  document.body.dataset.ready = "true";
}

if (!LANGS.includes(state.lang)) state.lang = "en";
init();

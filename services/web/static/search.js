// The search page: a query from the URL (or the form) -> GET/POST /api/v1/search -> a grid of hits.
"use strict";

const FILTERS = ["programme", "from", "to", "tags", "k"];
const $ = (id) => document.getElementById(id);
let queryFile = null; // an image or video picked, dropped or pasted
let composing = false; // an IME composition is under way: Enter belongs to it, not to the search
let lastHits = [];
let lastResult = null;
let lastParams = new URLSearchParams();
let generation = 0;

function filterParams() {
  const params = new URLSearchParams();
  for (const name of FILTERS) {
    const value = $(name).value.trim();
    if (value && !(name === "k" && value === "20")) params.set(name, value);
  }
  if ($("collapse").checked) params.set("collapse", "1");
  return params;
}

function fillForm(params) {
  $("q").value = params.get("q") || "";
  const k = params.get("k");
  if (k && ![...$("k").options].some((o) => o.value === k)) $("k").append(vs.el("option", { text: k }));
  for (const name of FILTERS) $(name).value = params.get(name) || (name === "k" ? "20" : "");
  $("collapse").checked = ["1", "true"].includes(params.get("collapse"));
  // Filters stay open on wide screens, and wherever one is set; on a phone they fold away.
  $("filters-box").open = window.innerWidth > 600 || FILTERS.some((n) => n !== "k" && params.get(n))
    || $("collapse").checked;
}

function apiParams(params) {
  const out = new URLSearchParams(params);
  if (out.get("collapse")) out.set("collapse", "true");
  return out;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function run(params) {
  const mine = ++generation;
  setStatus(vs.t("results.searching"));
  $("results").replaceChildren();
  try {
    let reply;
    if (queryFile) {
      const body = new FormData();
      body.append("file", queryFile, queryFile.name || "query");
      reply = await vs.api(`/api/v1/search?${apiParams(params)}`, { method: "POST", body });
    } else {
      reply = await vs.api(`/api/v1/search?${apiParams(params)}`);
    }
    const result = await reply.json();
    if (mine !== generation) return;
    render(result, params);
  } catch (error) {
    if (mine !== generation) return;
    setStatus(`${vs.t("error.prefix")}: ${error.message}`, true);
  }
}

function render(result, params) {
  lastHits = result.hits;
  lastResult = result;
  lastParams = params;
  const summary = result.hits.length
    ? vs.t("results.count", { n: result.hits.length, ms: Math.round(result.timings.total_ms) })
    : vs.t("results.none");
  setStatus(result.partial ? `${summary} ${vs.t("results.partial")}` : summary);
  const exportable = !queryFile && result.hits.length > 0;
  for (const [id, ext] of [["export-csv", "csv"], ["export-edl", "edl"]]) {
    $(id).hidden = !exportable;
    $(id).href = exportable ? `/api/v1/search.${ext}?${apiParams(params)}` : "#";
  }
  const items = result.hits.map((hit, i) => hitCard(hit, i));
  $("results").replaceChildren(...items);
}

function timecodeOf(hit) {
  return hit.source_timecode || hit.start_timecode;
}

function hitCard(hit, index) {
  const img = vs.el("img", { alt: hit.caption || hit.title || hit.clip_id, loading: "lazy", width: 320, height: 180 });
  if (hit.thumbnail_url) vs.mediaUrl(hit.thumbnail_url).then((url) => { img.src = url; }).catch(() => {});
  const heading = [hit.title, hit.programme].filter(Boolean).join(" · ") || hit.video_id;
  const card = vs.el("li", { class: "hit", tabindex: "0", "data-index": index, "data-clip": hit.clip_id },
    vs.el("button", { type: "button", class: "thumb", "aria-label": `${vs.t("hit.play")}: ${heading}`,
      onclick: () => play(hit) }, img),
    vs.el("div", { class: "meta" },
      vs.el("span", { class: "rank", text: `#${index + 1}` }),
      vs.el("span", { class: "score", title: vs.t("hit.score"), text: hit.score.toFixed(3) }),
      vs.el("span", { class: "tc", text: timecodeOf(hit) })),
    vs.el("h3", { text: heading }),
    hit.caption ? vs.el("p", { class: "caption", text: hit.caption }) : null,
    vs.el("div", { class: "actions" },
      vs.el("button", { type: "button", class: "play", onclick: () => play(hit), text: vs.t("hit.play") }),
      vs.el("button", { type: "button", class: "like", onclick: () => moreLike(hit), text: vs.t("hit.like") })));
  return card;
}

async function play(hit) {
  const video = $("video");
  const length = hit.end_seconds - hit.start_seconds;
  $("player-title").textContent = [hit.title, hit.programme].filter(Boolean).join(" · ") || hit.video_id;
  const range = hit.source_timecode ? `${hit.source_timecode} – ${hit.source_end_timecode}`
    : `${hit.start_seconds.toFixed(2)} s – ${hit.end_seconds.toFixed(2)} s`;
  $("player-info").textContent = `${range} · ${hit.clip_id}${hit.caption ? ` · ${hit.caption}` : ""}`;
  $("player").showModal();
  // The clip's MP4 starts at its first frame; stop at its end (a reference frame may follow it).
  video.ontimeupdate = () => { if (video.currentTime >= length) video.pause(); };
  try {
    video.src = await vs.mediaUrl(hit.video_url);
    await video.play();
  } catch (error) {
    $("player-info").textContent = `${vs.t("error.prefix")}: ${error.message}`;
  }
}

function moreLike(hit) {
  clearFile();
  const params = filterParams();
  params.set("like", hit.clip_id);
  $("q").value = "";
  navigate(params);
}

function navigate(params) {
  const url = `/search?${params}`;
  if (url !== location.pathname + location.search) history.pushState(null, "", url);
  run(params);
}

function submit() {
  if (composing) return; // Enter finished an IME composition (Korean), it was not a search
  const params = filterParams();
  const q = $("q").value.trim();
  if (queryFile) {
    history.replaceState(null, "", `/search?${params}`);
    run(params);
    return;
  }
  if (!q) return;
  params.set("q", q);
  navigate(params);
}

function setFile(file) {
  if (!file) return;
  queryFile = file;
  $("drop-text").textContent = `${file.name || "clipboard"} (${vs.bytes(file.size)})`;
  $("clear-file").hidden = false;
  $("q").value = "";
  submit();
}

function clearFile() {
  queryFile = null;
  $("file").value = "";
  $("drop-text").textContent = vs.t("search.drop");
  $("clear-file").hidden = true;
}

function columns() {
  return getComputedStyle($("results")).gridTemplateColumns.split(" ").filter(Boolean).length || 1;
}

function onResultsKey(event) {
  const card = event.target.closest(".hit");
  if (!card) return;
  const index = Number(card.dataset.index);
  const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(), ArrowUp: -columns(),
    Home: -index, End: lastHits.length - 1 - index };
  if (event.target !== card) return;
  if (event.key in moves) {
    event.preventDefault();
    const next = $("results").children[Math.max(0, Math.min(lastHits.length - 1, index + moves[event.key]))];
    if (next) next.focus();
  } else if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    play(lastHits[index]);
  } else if (event.key === "m") {
    moreLike(lastHits[index]);
  }
}

function fromUrl() {
  const params = new URLSearchParams(location.search);
  fillForm(params);
  if (params.get("q") || params.get("like")) run(params);
}

document.addEventListener("DOMContentLoaded", () => {
  const q = $("q");
  q.addEventListener("compositionstart", () => { composing = true; });
  q.addEventListener("compositionend", () => { composing = false; });
  q.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.isComposing || composing || event.keyCode === 229)) {
      event.preventDefault();
    }
  });
  $("search-form").addEventListener("submit", (event) => { event.preventDefault(); submit(); });
  $("file").addEventListener("change", () => setFile($("file").files[0]));
  $("clear-file").addEventListener("click", clearFile);
  vs.dropZone($("drop"), (files) => setFile(files[0]));
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files || [])].find((f) => /^(image|video)\//.test(f.type));
    if (file) { event.preventDefault(); setFile(file); }
  });
  $("results").addEventListener("keydown", onResultsKey);
  document.addEventListener("keydown", (event) => {
    if (event.key === "/" && !/^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName)) {
      event.preventDefault();
      q.focus();
    }
  });
  for (const id of ["export-csv", "export-edl"]) {
    $(id).addEventListener("click", async (event) => {
      if (!vs.key()) return; // a plain download link; with a key the file is fetched with the header
      event.preventDefault();
      const reply = await vs.api($(id).getAttribute("href"));
      const link = vs.el("a", { href: URL.createObjectURL(await reply.blob()), download: $(id).download });
      link.click();
    });
  }
  $("player").addEventListener("close", () => { $("video").pause(); });
  window.addEventListener("popstate", fromUrl);
  document.addEventListener("vs-lang", () => {
    if (lastResult) render(lastResult, lastParams);
  });
  fromUrl();
});

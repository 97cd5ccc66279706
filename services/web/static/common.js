// Shared by every page: UI text in Korean and English, the API key, calls to the JSON API.
"use strict";

const TEXT = {
  en: {
    "app.title": "vidsearch archive",
    "nav.search": "Search",
    "nav.ingest": "Ingest",
    "lang.switch": "한국어",
    "key.button": "API key",
    "key.prompt": "This archive needs an API key. It is kept for this browser tab only.",
    "key.save": "Use key",
    "key.cancel": "Cancel",
    "search.placeholder": "Describe a scene, e.g. a man answering the phone in a studio",
    "search.go": "Search",
    "search.file": "Image or video",
    "search.drop": "Drop or paste an image or a video clip here, or pick one",
    "search.clearFile": "Clear file",
    "filter.title": "Filters",
    "filter.programme": "Programme",
    "filter.from": "Aired from",
    "filter.to": "Aired to",
    "filter.tags": "Tags (comma-separated)",
    "filter.collapse": "Best clip per video",
    "filter.k": "Results",
    "results.none": "No matching clips.",
    "results.count": "{n} clips in {ms} ms",
    "results.partial": "Some shards did not answer; results may be incomplete.",
    "results.searching": "Searching…",
    "results.empty": "Type a description, or drop an image or a video clip.",
    "hit.play": "Play",
    "hit.like": "More like this",
    "hit.score": "score",
    "export.csv": "Export CSV",
    "export.edl": "Export EDL",
    "player.close": "Close",
    "ingest.title": "Add videos to the archive",
    "ingest.files": "Videos",
    "ingest.drop": "Drop video files here, or pick them",
    "ingest.upload": "Upload",
    "ingest.title.field": "Title",
    "ingest.air_date": "Air date",
    "ingest.jobs": "Jobs",
    "ingest.cancel": "Cancel",
    "ingest.delete": "Delete video",
    "ingest.clear": "Clear finished",
    "ingest.sent": "sent {sent} of {total}",
    "ingest.queued": "queued",
    "job.file": "File",
    "job.video": "Video id",
    "job.state": "State",
    "job.progress": "Progress",
    "job.actions": "Actions",
    "state.UPLOADING": "uploading",
    "state.QUEUED": "queued",
    "state.RUNNING": "running",
    "state.SUCCEEDED": "done",
    "state.FAILED": "failed",
    "state.CANCELLED": "cancelled",
    "stage.PROBING": "probing",
    "stage.DECODING": "decoding",
    "stage.ENCODING": "encoding",
    "stage.INDEXING": "indexing",
    "stage.DONE": "done",
    "stage.UNSPECIFIED": "waiting",
    "error.prefix": "Error",
  },
  ko: {
    "app.title": "vidsearch 영상 아카이브",
    "nav.search": "검색",
    "nav.ingest": "영상 등록",
    "lang.switch": "English",
    "key.button": "API 키",
    "key.prompt": "이 아카이브는 API 키가 필요합니다. 키는 이 브라우저 탭에만 보관됩니다.",
    "key.save": "키 사용",
    "key.cancel": "취소",
    "search.placeholder": "장면을 설명하세요. 예: 스튜디오에서 전화를 받는 남자",
    "search.go": "검색",
    "search.file": "이미지 또는 영상",
    "search.drop": "이미지나 영상 클립을 여기에 끌어 놓거나 붙여 넣거나 선택하세요",
    "search.clearFile": "파일 지우기",
    "filter.title": "필터",
    "filter.programme": "프로그램",
    "filter.from": "방송일 시작",
    "filter.to": "방송일 끝",
    "filter.tags": "태그 (쉼표로 구분)",
    "filter.collapse": "영상마다 가장 좋은 클립만",
    "filter.k": "결과 수",
    "results.none": "일치하는 클립이 없습니다.",
    "results.count": "클립 {n}개, {ms} ms",
    "results.partial": "일부 샤드가 응답하지 않아 결과가 불완전할 수 있습니다.",
    "results.searching": "검색 중…",
    "results.empty": "장면 설명을 입력하거나 이미지나 영상 클립을 끌어 놓으세요.",
    "hit.play": "재생",
    "hit.like": "비슷한 장면",
    "hit.score": "점수",
    "export.csv": "CSV 내보내기",
    "export.edl": "EDL 내보내기",
    "player.close": "닫기",
    "ingest.title": "아카이브에 영상 추가",
    "ingest.files": "영상 파일",
    "ingest.drop": "영상 파일을 여기에 끌어 놓거나 선택하세요",
    "ingest.upload": "업로드",
    "ingest.title.field": "제목",
    "ingest.air_date": "방송일",
    "ingest.jobs": "작업",
    "ingest.cancel": "취소",
    "ingest.delete": "영상 삭제",
    "ingest.clear": "끝난 작업 지우기",
    "ingest.sent": "{total} 중 {sent} 전송",
    "ingest.queued": "대기 중",
    "job.file": "파일",
    "job.video": "영상 ID",
    "job.state": "상태",
    "job.progress": "진행",
    "job.actions": "작업",
    "state.UPLOADING": "업로드 중",
    "state.QUEUED": "대기 중",
    "state.RUNNING": "처리 중",
    "state.SUCCEEDED": "완료",
    "state.FAILED": "실패",
    "state.CANCELLED": "취소됨",
    "stage.PROBING": "분석",
    "stage.DECODING": "디코딩",
    "stage.ENCODING": "임베딩",
    "stage.INDEXING": "색인",
    "stage.DONE": "완료",
    "stage.UNSPECIFIED": "대기",
    "error.prefix": "오류",
  },
};

const vs = {
  lang: localStorage.getItem("vidsearch.lang") ||
    ((navigator.language || "en").toLowerCase().startsWith("ko") ? "ko" : "en"),

  t(key, values = {}) {
    const text = (TEXT[vs.lang] && TEXT[vs.lang][key]) || TEXT.en[key] || key;
    return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
  },

  translate(root = document) {
    document.documentElement.lang = vs.lang;
    root.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = vs.t(el.dataset.i18n); });
    root.querySelectorAll("[data-i18n-placeholder]").forEach((el) => {
      el.placeholder = vs.t(el.dataset.i18nPlaceholder);
    });
    root.querySelectorAll("[data-i18n-label]").forEach((el) => {
      el.setAttribute("aria-label", vs.t(el.dataset.i18nLabel));
    });
  },

  setLang(lang) {
    vs.lang = lang;
    localStorage.setItem("vidsearch.lang", lang);
    vs.translate();
    document.dispatchEvent(new CustomEvent("vs-lang"));
  },

  // Files dropped on ``zone`` go to ``onFiles``; the zone is highlighted while a drag is over it.
  dropZone(zone, onFiles) {
    zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      onFiles([...event.dataTransfer.files]);
    });
  },

  key() { return sessionStorage.getItem("vidsearch.key") || ""; },

  headers(extra = {}) {
    const key = vs.key();
    return key ? { ...extra, "x-api-key": key } : extra;
  },

  // One call to the JSON API; a failure throws an Error carrying the API's own message.
  async api(path, options = {}) {
    const reply = await fetch(path, { ...options, headers: vs.headers(options.headers || {}) });
    if (reply.status === 401) {
      await vs.askKey();
      if (vs.key()) return vs.api(path, options);
    }
    if (!reply.ok) throw await vs.failure(reply);
    return reply;
  },

  async failure(reply) {
    let message = `${reply.status} ${reply.statusText}`;
    try {
      const body = await reply.json();
      if (body.error) message = `${body.error.code}: ${body.error.message}`;
    } catch (_) { /* not JSON */ }
    const error = new Error(message);
    error.status = reply.status;
    return error;
  },

  // A media URL usable in <img>/<video>: direct without a key (Range requests work), else a blob
  // fetched with the key header (elements cannot send headers).
  async mediaUrl(url) {
    if (!vs.key()) return url;
    const reply = await vs.api(url);
    return URL.createObjectURL(await reply.blob());
  },

  askKey() {
    const dialog = document.getElementById("key-dialog");
    if (!dialog) return Promise.resolve();
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => {
        if (dialog.returnValue === "save") {
          sessionStorage.setItem("vidsearch.key", document.getElementById("key-input").value.trim());
        }
        resolve();
      }, { once: true });
      dialog.showModal();
    });
  },

  el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  },

  bytes(n) {
    const units = ["B", "KB", "MB", "GB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  },

  // Follows a server-sent event stream through fetch (EventSource cannot send the key header).
  async events(path, onEvent, signal) {
    const reply = await vs.api(path, { signal, headers: { Accept: "text/event-stream" } });
    const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let type = "message";
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) type = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (onEvent(type, data ? JSON.parse(data) : null) === false) return;
      }
    }
  },
};

document.addEventListener("DOMContentLoaded", () => {
  vs.translate();
  const lang = document.getElementById("lang-switch");
  if (lang) lang.addEventListener("click", () => vs.setLang(vs.lang === "ko" ? "en" : "ko"));
  const keyButton = document.getElementById("key-button");
  fetch("/api/v1/config").then((r) => r.json()).then((config) => {
    vs.config = config;
    if (keyButton) {
      keyButton.hidden = !config.api_keys;
      keyButton.addEventListener("click", () => vs.askKey());
    }
    if (config.api_keys && !vs.key()) vs.askKey();
  }).catch(() => {});
});

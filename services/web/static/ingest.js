// The ingest page: upload files (XHR, for upload progress), then follow each job's stages over SSE.
"use strict";

const $ = (id) => document.getElementById(id);
const STORE = "vidsearch.jobs"; // the jobs this browser started: ingest has no "list jobs" call
const FINAL = ["SUCCEEDED", "FAILED", "CANCELLED"];
const rows = new Map(); // row id -> {row, job, ...}

function saved() {
  try { return JSON.parse(localStorage.getItem(STORE) || "[]"); } catch (_) { return []; }
}

function save() {
  const jobs = [...rows.values()].filter((r) => r.job && r.job.job_id)
    .map((r) => ({ job_id: r.job.job_id, video_id: r.job.video_id, file: r.file }));
  localStorage.setItem(STORE, JSON.stringify(jobs.slice(-100)));
}

function addRow(id, file) {
  const upload = vs.el("progress", { class: "upload-bar", max: 1, value: 0 });
  const stages = vs.el("progress", { class: "stage-bar", max: 1, value: 0 });
  const detail = vs.el("span", { class: "detail" });
  const state = vs.el("span", { class: "state" });
  const cancel = vs.el("button", { type: "button", class: "cancel", text: vs.t("ingest.cancel") });
  const remove = vs.el("button", { type: "button", class: "delete", text: vs.t("ingest.delete"), hidden: true });
  const video = vs.el("td", { class: "video" });
  const row = vs.el("tr", { "data-row": id },
    vs.el("td", { class: "file", text: file }), video, vs.el("td", {}, state),
    vs.el("td", { class: "progress" }, upload, stages, detail), vs.el("td", { class: "actions" }, cancel, remove));
  $("job-rows").prepend(row);
  const entry = { row, file, upload, stages, detail, state, cancel, remove, video, job: null, xhr: null };
  rows.set(id, entry);
  cancel.addEventListener("click", () => cancelRow(entry));
  remove.addEventListener("click", () => deleteVideo(entry));
  return entry;
}

function showState(entry, stateName, detail = "") {
  entry.state.textContent = vs.t(`state.${stateName}`);
  entry.row.dataset.state = stateName;
  entry.detail.textContent = detail;
  const final = FINAL.includes(stateName);
  entry.cancel.hidden = final;
  entry.remove.hidden = stateName !== "SUCCEEDED";
}

function showJob(entry, job) {
  entry.job = job;
  entry.video.textContent = job.video_id;
  entry.upload.value = entry.upload.max;
  entry.stages.max = Math.max(1, job.clips_total);
  entry.stages.value = job.state === "SUCCEEDED" ? entry.stages.max : job.clips_done;
  const stage = vs.t(`stage.${job.stage}`);
  const clips = job.clips_total ? ` ${job.clips_done}/${job.clips_total}` : "";
  showState(entry, job.state, job.error ? `${vs.t("error.prefix")}: ${job.error}` : `${stage}${clips}`);
}

async function follow(entry) {
  try {
    await vs.events(`/api/v1/jobs/${encodeURIComponent(entry.job.job_id)}/events`, (type, data) => {
      if (type === "job") showJob(entry, data);
      if (type === "error") showState(entry, "FAILED", `${vs.t("error.prefix")}: ${data.error.message}`);
      return type !== "end";
    });
  } catch (error) {
    entry.detail.textContent = `${vs.t("error.prefix")}: ${error.message}`;
  }
}

function upload(file, meta, id) {
  const entry = addRow(id, file.name);
  showState(entry, "UPLOADING");
  const params = new URLSearchParams({ filename: file.name, ...meta });
  const xhr = new XMLHttpRequest();
  entry.xhr = xhr;
  xhr.open("POST", `/api/v1/videos?${params}`);
  for (const [name, value] of Object.entries(vs.headers({ "Content-Type": "application/octet-stream" }))) {
    xhr.setRequestHeader(name, value);
  }
  xhr.upload.addEventListener("progress", (event) => {
    if (!event.lengthComputable) return;
    entry.upload.max = event.total;
    entry.upload.value = event.loaded;
    entry.detail.textContent = vs.t("ingest.sent", { sent: vs.bytes(event.loaded), total: vs.bytes(event.total) });
  });
  xhr.addEventListener("load", () => {
    entry.xhr = null;
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
    if (xhr.status !== 202) {
      const message = body.error ? `${body.error.code}: ${body.error.message}` : `${xhr.status}`;
      showState(entry, "FAILED", `${vs.t("error.prefix")}: ${message}`);
      return;
    }
    entry.job = { job_id: body.job_id, video_id: body.video_id };
    entry.video.textContent = body.video_id;
    showState(entry, "QUEUED", vs.t("ingest.queued"));
    save();
    follow(entry);
  });
  xhr.addEventListener("error", () => showState(entry, "FAILED", `${vs.t("error.prefix")}: network`));
  xhr.addEventListener("abort", () => showState(entry, "CANCELLED"));
  xhr.send(file);
}

async function cancelRow(entry) {
  if (entry.xhr) { entry.xhr.abort(); return; }
  if (!entry.job) return;
  try {
    const reply = await vs.api(`/api/v1/jobs/${encodeURIComponent(entry.job.job_id)}/cancel`, { method: "POST" });
    showJob(entry, await reply.json());
  } catch (error) {
    entry.detail.textContent = `${vs.t("error.prefix")}: ${error.message}`;
  }
}

async function deleteVideo(entry) {
  try {
    const reply = await vs.api(`/api/v1/videos/${encodeURIComponent(entry.job.video_id)}`, { method: "DELETE" });
    const body = await reply.json();
    entry.detail.textContent = `-${body.clips_deleted} clips`;
    entry.remove.hidden = true;
  } catch (error) {
    entry.detail.textContent = `${vs.t("error.prefix")}: ${error.message}`;
  }
}

function submit(files) {
  const meta = {};
  for (const name of ["title", "programme", "air_date", "tags"]) {
    const value = $(name).value.trim();
    if (value) meta[name] = value;
  }
  for (const file of files) upload(file, meta, `${Date.now()}-${Math.random().toString(36).slice(2)}`);
  $("files").value = "";
}

async function restore() {
  for (const job of saved().reverse()) {
    const entry = addRow(job.job_id, job.file || "");
    entry.job = job;
    entry.video.textContent = job.video_id;
    try {
      const reply = await vs.api(`/api/v1/jobs/${encodeURIComponent(job.job_id)}`);
      const current = await reply.json();
      showJob(entry, current);
      if (!FINAL.includes(current.state)) follow(entry);
    } catch (error) {
      showState(entry, "FAILED", `${vs.t("error.prefix")}: ${error.message}`);
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("upload-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if ($("files").files.length) submit([...$("files").files]);
  });
  vs.dropZone($("drop"), submit);
  $("clear-done").addEventListener("click", () => {
    for (const [id, entry] of rows) {
      if (FINAL.includes(entry.row.dataset.state)) { entry.row.remove(); rows.delete(id); }
    }
    save();
  });
  restore();
});

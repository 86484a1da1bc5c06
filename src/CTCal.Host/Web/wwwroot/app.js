// ctcal-host web pages: plain JavaScript over the server's JSON API and server-sent events (no framework, no build step).
'use strict';

const token = new URLSearchParams(location.search).get('token');
const withToken = url => token ? url + (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token) : url;
const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'text') e.textContent = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
};

// --- API --------------------------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(answer, status) { super(answer.error || ('HTTP ' + status)); this.field = answer.field; this.problems = answer.problems || []; }
}

async function api(path, body) {
  const init = { headers: {} };
  if (token) init.headers['X-CTCal-Token'] = token;
  if (body !== undefined) { init.method = 'POST'; init.headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
  const response = await fetch(withToken(path), init);
  const answer = await response.json().catch(() => ({ error: 'HTTP ' + response.status }));
  if (!response.ok) throw new ApiError(answer, response.status);
  return answer;
}

// Follows a job's server-sent events until its last one (done, error or cancelled); handlers by event type.
function follow(jobId, handlers) {
  return new Promise(resolve => {
    const source = new EventSource(withToken(`/api/jobs/${jobId}/events`));
    for (const type of ['progress', 'image']) {
      source.addEventListener(type, e => handlers[type] && handlers[type](JSON.parse(e.data)));
    }
    for (const type of ['done', 'error', 'cancelled']) {
      source.addEventListener(type, e => {
        source.close();
        const data = JSON.parse(e.data);
        handlers[type] && handlers[type](data);
        resolve({ type, data });
      });
    }
  });
}

const cancelJob = id => api(`/api/jobs/${id}/cancel`, {});

// --- Forms ------------------------------------------------------------------------------------------------------------

const numberFields = new Set(['width', 'height', 'steps', 'guidance', 'seed', 'count', 'strength', 'loraRank', 'resolution']);

function formValues(form) {
  const values = {};
  for (const input of form.elements) {
    if (!input.name || input.type === 'file') continue;
    if (input.type === 'checkbox') values[input.name] = input.checked;
    else if (input.value === '') continue;
    else values[input.name] = numberFields.has(input.name) ? Number(input.value) : input.value;
  }
  return values;
}

function showError(form, box, error) {
  for (const input of form.querySelectorAll('.invalid')) input.classList.remove('invalid');
  if (!error) { box.hidden = true; box.textContent = ''; return; }
  box.hidden = false;
  box.textContent = error.message;
  for (const field of [error.field, ...(error.problems || []).map(p => p.field)]) {
    const input = field && form.elements[field];
    if (input && input.classList) input.classList.add('invalid');
  }
}

const readFile = file => new Promise((resolve, reject) => {
  const reader = new FileReader();
  reader.onload = () => resolve(reader.result);
  reader.onerror = () => reject(reader.error);
  reader.readAsDataURL(file);
});

// --- Models -----------------------------------------------------------------------------------------------------------

let models = [];
let options = { schedulers: [], methods: [] };

async function loadModels() {
  const answer = await api('/api/models');
  models = answer.models;
  const errors = $('#plugin-errors');
  errors.hidden = answer.errors.length === 0;
  errors.textContent = answer.errors.map(e => `plugin ${e.plugin}: ${e.message}`).join('\n');
  const body = $('#models-body');
  body.replaceChildren(...models.map(m => {
    const p = m.provenance;
    const provenance = el('td');
    if (p) {
      if (p.source) provenance.append(el('small', { text: 'from ' + p.source }));
      if (p.unetWeights) provenance.append(el('small', { text: 'UNet ' + p.unetWeights }));
      for (const lora of p.loras || []) provenance.append(el('small', { text: 'LoRA ' + lora }));
      provenance.append(el('small', { text: [p.exporter, p.created, p.steps ? p.steps + ' steps' : null].filter(Boolean).join(', ') }));
      provenance.append(el('small', { text: `graphs: ${p.optimize} profile, ${p.precision}` + (p.stepCacheBranch ? `, step cache (branch ${p.stepCacheBranch})` : '') }));
    } else {
      provenance.append(el('small', { text: m.manifestError ? 'manifest: ' + m.manifestError : 'no manifest' }));
    }
    return el('tr', { 'data-model': m.id },
      el('td', {}, el('strong', { text: m.id }), el('small', { text: m.name !== m.id ? m.name : (m.description || '') })),
      el('td', { text: m.plugin }),
      el('td', { text: m.family }),
      el('td', { text: `${m.width}x${m.height}${m.hasVaeEncoder ? ' · img2img' : ''}` }),
      el('td', {}, el('span', { class: 'badge ' + (m.method || ''), text: m.method || 'not recorded' })),
      provenance);
  }));
  for (const select of document.querySelectorAll('select[name=model], select[name=modelA], select[name=modelB]')) {
    const current = select.value;
    select.replaceChildren(...models.map(m => el('option', { value: m.id, text: `${m.id} (${m.family}${m.method ? ', ' + m.method : ''})` })));
    if (models.some(m => m.id === current)) select.value = current;
  }
  const b = $('select[name=modelB]');
  if (b && b.selectedIndex === 0 && models.length > 1 && !b.dataset.touched) b.selectedIndex = 1;
}

async function loadOptions() {
  options = await api('/api/options');
  for (const select of document.querySelectorAll('select[name=scheduler]')) {
    select.append(...options.schedulers.map(s => el('option', { value: s, text: s })));
  }
  $('#finetune-form select[name=method]').append(...options.methods.map(m => el('option', { value: m, text: m })));
  $('#finetune-form [name=steps]').placeholder = options.fineTune.steps;
  $('#finetune-form [name=loraRank]').placeholder = options.fineTune.loraRank;
  $('#finetune-form [name=resolution]').placeholder = options.fineTune.resolution;
  $('#export-form select[name=predictionType]').append(...options.predictionTypes.map(p => el('option', { value: p, text: p })));
}

// --- Generate, gallery, compare ---------------------------------------------------------------------------------------

function figure(item) {
  const p = item.parameters;
  return el('figure', { 'data-file': item.file },
    el('a', { href: withToken('/gallery/' + item.file), target: '_blank' }, el('img', { src: withToken('/gallery/' + item.file), alt: p.prompt })),
    el('figcaption', { text: `${p.model} · seed ${item.seed} · ${p.steps} steps · ${p.scheduler} · CFG ${p.guidanceScale} · ${p.width}x${p.height}` }),
    el('figcaption', { text: p.prompt + (p.negativePrompt ? ' — not: ' + p.negativePrompt : '') }));
}

function stepText(p) {
  return p.stage === 'Denoising' ? `image ${p.image + 1}/${p.count} · step ${p.step}/${p.total}` : p.stage.replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();
}

// Runs one generation job, drawing its progress into `progress`/`status` and its images into `thumbs`.
async function runGeneration(request, progress, status, thumbs, onStart) {
  const { id } = await api('/api/generate', request);
  onStart && onStart(id);
  return follow(id, {
    progress: p => {
      if (p.stage === 'Denoising') { progress.max = p.total * p.count; progress.value = p.image * p.total + p.step; }
      if (status) status.textContent = stepText(p);
    },
    image: item => thumbs.append(figure(item)),
  });
}

function setupGenerate() {
  const form = $('#generate-form');
  const box = $('[data-testid=generate-error]');
  const cancel = $('[data-testid=cancel-generate]');
  const job = $('#generate-job');
  let running = null;
  cancel.addEventListener('click', () => running && cancelJob(running));
  form.addEventListener('submit', async e => {
    e.preventDefault();
    showError(form, box, null);
    const request = formValues(form);
    const file = form.elements.initImage.files[0];
    if (file) request.initImage = await readFile(file);
    job.hidden = false;
    const status = $('.status', job);
    status.textContent = 'starting';
    $('progress', job).value = 0;
    try {
      const end = await runGeneration(request, $('progress', job), status, $('#generate-results'), id => { running = id; cancel.disabled = false; });
      if (end.type === 'done') {
        status.textContent = `done: ${end.data.images.length} image(s), ${end.data.provider}` + (end.data.warnings.length ? ' — ' + end.data.warnings.join('; ') : '');
      } else if (end.type === 'cancelled') {
        status.textContent = 'cancelled';
      } else {
        status.textContent = 'failed';
        showError(form, box, { message: (end.data.plugin ? `plugin ${end.data.plugin}: ` : '') + end.data.message });
      }
    } catch (error) {
      job.hidden = true;
      showError(form, box, error);
    } finally {
      running = null;
      cancel.disabled = true;
    }
  });
}

async function loadGallery() {
  const items = await api('/api/gallery');
  $('#gallery').replaceChildren(...items.map(figure));
}

function setupCompare() {
  const form = $('#compare-form');
  const box = $('[data-testid=compare-error]');
  $('select[name=modelB]', form).addEventListener('change', e => { e.target.dataset.touched = '1'; });
  form.addEventListener('submit', async e => {
    e.preventDefault();
    showError(form, box, null);
    const values = formValues(form);
    const { modelA, modelB, ...shared } = values;
    const sides = [[modelA, $('#compare-a')], [modelB, $('#compare-b')]];
    for (const [model, side] of sides) {
      $('h3', side).textContent = model;
      $('.thumbs', side).replaceChildren();
      $('progress', side).value = 0;
    }
    try {
      // Both models, the same prompt and seeds, at the same time.
      const ends = await Promise.all(sides.map(([model, side]) =>
        runGeneration({ ...shared, model }, $('progress', side), null, $('.thumbs', side))));
      const failed = ends.find(end => end.type === 'error');
      if (failed) showError(form, box, { message: failed.data.message });
    } catch (error) {
      showError(form, box, error);
    }
  });
}

// --- Fine-tune and export ---------------------------------------------------------------------------------------------

function drawLoss(svg, points, totalSteps) {
  const w = 600, h = 220, left = 44, bottom = 24, top = 10, right = 10;
  svg.replaceChildren();
  const ns = 'http://www.w3.org/2000/svg';
  const add = (tag, attrs, text) => { const e = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); if (text) e.textContent = text; svg.append(e); return e; };
  add('line', { class: 'axis', x1: left, y1: h - bottom, x2: w - right, y2: h - bottom });
  add('line', { class: 'axis', x1: left, y1: top, x2: left, y2: h - bottom });
  if (points.length === 0) return;
  const maxStep = Math.max(totalSteps || 0, ...points.map(p => p[0]));
  const losses = points.map(p => p[1]);
  let lo = Math.min(...losses), hi = Math.max(...losses);
  if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
  const x = s => left + (w - left - right) * s / Math.max(maxStep, 1);
  const y = v => top + (h - top - bottom) * (hi - v) / (hi - lo);
  add('polyline', { class: 'line', points: points.map(p => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ') });
  for (const p of points.length <= 40 ? points : []) {
    // Each point's title (a tooltip) carries its step and the trainer's loss.
    const title = document.createElementNS(ns, 'title');
    title.textContent = `step ${p[0]}: loss ${p[1].toPrecision(5)}`;
    add('circle', { cx: x(p[0]), cy: y(p[1]), r: 2.5, fill: '#2f6fdf' }).append(title);
  }
  add('text', { x: 4, y: top + 10 }, hi.toPrecision(3));
  add('text', { x: 4, y: h - bottom }, lo.toPrecision(3));
  add('text', { x: w - right - 60, y: h - 6 }, `step ${maxStep}`);
  add('text', { x: left + 6, y: h - 6 }, 'loss');
}

let activeFineTune = null;

function followFineTune(id) {
  const panel = $('#finetune-job');
  const status = $('.status', panel);
  const progress = $('progress', panel);
  const cancel = $('[data-testid=cancel-finetune]');
  const points = [];
  let total = 0;
  panel.hidden = false;
  activeFineTune = id;
  cancel.disabled = false;
  drawLoss($('#loss-curve'), points, 0);
  return follow(id, {
    progress: p => {
      if (p.stage === 'start' && p.total) total = p.total;
      if (p.stage === 'step') {
        total = p.total || total;
        progress.max = total || 1; progress.value = p.current;
        const loss = p.metrics && p.metrics.loss;
        if (loss !== undefined) points.push([p.current, loss]);
        status.textContent = `step ${p.current}/${total}` + (loss !== undefined ? ` · loss ${loss.toPrecision(4)}` : '');
        drawLoss($('#loss-curve'), points, total);
      } else if (p.stage !== 'step') {
        status.textContent = `${p.stage}${p.message ? ': ' + p.message : ''}`;
      }
    },
    done: d => { progress.value = progress.max; status.textContent = `done: ${d.steps} steps, registered as ${d.model.id}`; },
    cancelled: () => { status.textContent = 'cancelled (resume continues from the latest checkpoint)'; },
    error: d => { status.textContent = 'failed'; showError($('#finetune-form'), $('[data-testid=finetune-error]'), { message: (d.plugin ? `plugin ${d.plugin}: ` : '') + d.message }); },
  }).finally(() => { activeFineTune = null; cancel.disabled = true; loadFineTunes(); loadModels(); });
}

async function startFineTune(request) {
  const form = $('#finetune-form');
  const box = $('[data-testid=finetune-error]');
  showError(form, box, null);
  try {
    const { id } = await api('/api/finetune', request);
    const following = followFineTune(id);
    await loadFineTunes();
    await following;
  } catch (error) {
    showError(form, box, error);
  }
}

async function exportFineTune(jobId, modelId, status) {
  try {
    const { id } = await api(`/api/finetunes/${jobId}/export`, { modelId, overwrite: true });
    await followExport(id, status);
  } catch (error) {
    status.textContent = error.message;
    status.classList.add('state-failed');
  }
}

async function loadFineTunes() {
  const jobs = await api('/api/jobs?kind=finetune');
  $('#finetunes-body').replaceChildren(...jobs.slice().reverse().map(job => {
    const actions = el('td');
    if (job.state === 'done') actions.append(el('a', { href: '#export', text: 'Export…' }));
    if (job.state === 'cancelled' || job.state === 'failed') {
      actions.append(el('button', { class: 'secondary', 'data-testid': 'resume-' + job.id, text: 'Resume', onclick: () => startFineTune({ ...job.request, resume: true }) }));
    }
    return el('tr', { 'data-job': job.id },
      el('td', { text: job.id }), el('td', { text: job.request.modelId }), el('td', { text: job.request.method || options.fineTune.method }),
      el('td', { class: 'state-' + job.state, text: job.state + (job.error ? ': ' + job.error : '') }), actions);
  }));
  // A fine-tune still running (started before this page was opened) is followed: its stream replays every event.
  const running = jobs.find(j => j.state === 'running');
  if (running && !activeFineTune) followFineTune(running.id);
  const finished = jobs.filter(j => j.state === 'done');
  $('#export-finetunes-body').replaceChildren(...(finished.length ? finished.reverse().map(job => {
    const input = el('input', { value: job.request.modelId + '-export', 'data-testid': 'export-id-' + job.id });
    const status = el('span', { class: 'status' });
    return el('tr', { 'data-job': job.id },
      el('td', { text: `${job.id} (${job.request.modelId})` }), el('td', { text: job.request.output }), el('td', {}, input),
      el('td', {}, el('button', { 'data-testid': 'export-' + job.id, text: 'Export', onclick: () => exportFineTune(job.id, input.value, status) }), status));
  }) : [el('tr', {}, el('td', { colspan: 4, text: 'No finished fine-tune yet.' }))]));
}

function followExport(id, status) {
  const panel = $('#export-job');
  panel.hidden = false;
  const progress = $('progress', panel);
  const text = $('.status', panel);
  return follow(id, {
    progress: p => { progress.max = p.total || 1; progress.value = p.total ? p.current : 0; text.textContent = `${p.stage}${p.message ? ': ' + p.message : ''}`; },
    done: d => { progress.value = progress.max; text.textContent = `exported ${d.model.id} to ${d.model.folder}`; if (status) status.textContent = 'exported ' + d.model.id; },
    error: d => { text.textContent = 'failed: ' + d.message; if (status) status.textContent = 'failed: ' + d.message; },
    cancelled: () => { text.textContent = 'cancelled'; },
  }).finally(loadModels);
}

function setupFineTune() {
  const form = $('#finetune-form');
  $('[data-testid=cancel-finetune]').addEventListener('click', () => activeFineTune && cancelJob(activeFineTune));
  form.addEventListener('submit', e => { e.preventDefault(); startFineTune(formValues(form)); });
  const exportForm = $('#export-form');
  const box = $('[data-testid=export-error]');
  exportForm.addEventListener('submit', async e => {
    e.preventDefault();
    showError(exportForm, box, null);
    try {
      const { id } = await api('/api/export', formValues(exportForm));
      await followExport(id, null);
    } catch (error) {
      showError(exportForm, box, error);
    }
  });
}

// --- Navigation -------------------------------------------------------------------------------------------------------

const onShow = { models: loadModels, gallery: loadGallery, finetune: loadFineTunes, export: loadFineTunes, generate: loadModels, compare: loadModels };

function show() {
  const page = (location.hash || '#models').slice(1);
  for (const section of document.querySelectorAll('.page')) section.classList.toggle('active', section.id === 'page-' + page);
  for (const link of document.querySelectorAll('nav a')) link.classList.toggle('active', link.dataset.page === page);
  (onShow[page] || (() => Promise.resolve()))().catch(error => {
    const errors = $('#plugin-errors');
    errors.hidden = false;
    errors.textContent = error.message;
  });
}

(async () => {
  for (const slot of document.querySelectorAll('template[data-fields]')) {
    slot.replaceWith(document.getElementById(slot.dataset.fields).content.cloneNode(true));
  }
  setupGenerate();
  setupCompare();
  setupFineTune();
  await loadOptions();
  window.addEventListener('hashchange', show);
  show();
})();

// The demo page of `medrl serve`: one model streamed through the OpenAI-compatible API, or two
// side by side (optionally blinded) through /api/compare, each answer shown with its rule scores
// and the spans the rules point at. No framework, no external resource: it works offline.
'use strict';

const $ = (id) => document.getElementById(id);
let info = null;
let compareId = null;

// Text is always put into the page as text (textContent), never as HTML: answers are model
// output and must not run as markup.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function setStatus(text, isError) {
  const s = $('status');
  s.textContent = text;
  s.classList.toggle('error', !!isError);
}

async function load() {
  const r = await fetch('/api/info');
  info = await r.json();
  const a = $('model-a'), b = $('model-b');
  b.append(el('option', { value: '' }, '— none (one answer, streamed)'));
  for (const m of info.models) {
    a.append(el('option', { value: m.name }, m.name));
    b.append(el('option', { value: m.name }, m.name));
  }
  if (info.models.length > 1) b.value = info.models[1].name;
  const rs = info.ruleset;
  const signed = rs.signed_by ? 'signed by ' + rs.signed_by.join(', ') : 'UNSIGNED (--allow-unsigned)';
  $('ruleset').textContent = `${rs.id} · revision ${rs.revision} · sha256 ${rs.sha256.slice(0, 12)}… · ${signed}`;
  $('ruleset').title = rs.description;
  const mt = $('max-tokens');
  mt.max = info.limits.max_tokens;
  mt.value = Math.min(128, info.limits.max_tokens);
  document.body.dataset.ready = '1';
}

function settings() {
  const seed = Number($('seed').value);
  const category = $('category').value;
  return {
    seed: Number.isFinite(seed) && seed >= 0 ? Math.floor(seed) : 0,
    max_tokens: Math.max(1, Math.floor(Number($('max-tokens').value) || 1)),
    temperature: Number($('temperature').value),
    system: $('system').value.trim(),
    medrl: category ? { category } : undefined,
  };
}

function newPanel(label) {
  const panel = $('answer-template').content.firstElementChild.cloneNode(true);
  panel.id = 'answer-' + label.toLowerCase();
  panel.querySelector('.label').textContent = label;
  $('answers').append(panel);
  return panel;
}

// The answer with every hit span marked. Spans are [start, end) byte offsets into the UTF-8
// answer (what the rules see), so the text is cut as bytes and each piece decoded back.
function highlighted(content, rules) {
  const bytes = new TextEncoder().encode(content);
  const hits = [];
  rules.forEach((r, i) => {
    for (const h of r.hits || []) {
      if (h.span && h.span[0] < h.span[1] && h.span[1] <= bytes.length) {
        hits.push({ start: h.span[0], end: h.span[1], rule: r.id, index: i, code: h.code, detail: h.detail, kind: r.kind });
      }
    }
  });
  const cuts = new Set([0, bytes.length]);
  for (const h of hits) { cuts.add(h.start); cuts.add(h.end); }
  const points = [...cuts].sort((x, y) => x - y);
  const out = document.createDocumentFragment();
  const decoder = new TextDecoder();
  for (let i = 0; i + 1 < points.length; i++) {
    const [s, e] = [points[i], points[i + 1]];
    const text = decoder.decode(bytes.slice(s, e));
    const over = hits.filter((h) => h.start <= s && e <= h.end);
    if (over.length === 0) { out.append(text); continue; }
    const mark = el('mark', { class: 'hit ' + over[0].kind + ' rule-' + over[0].index }, text);
    mark.title = over.map((h) => `${h.rule}: ${h.code}${h.detail ? ' (' + h.detail + ')' : ''}`).join('\n');
    out.append(mark);
  }
  return out;
}

function fmt(x, digits) {
  return x === null || x === undefined ? '–' : Number(x).toFixed(digits);
}

// Hit codes, each once, with how often it was found: `missing-section ×4`.
function codes(hits) {
  const n = new Map();
  for (const h of hits) n.set(h.code, (n.get(h.code) || 0) + 1);
  return [...n].map(([c, k]) => (k > 1 ? `${c} ×${k}` : c)).join(', ');
}

// Fills a panel with a finished, scored answer.
function render(panel, answer, clientMs) {
  const m = answer.medrl;
  const content = panel.querySelector('.content');
  content.replaceChildren(highlighted(answer.content, m.rules));
  content.lang = m.sample.lang;
  if (answer.model) panel.querySelector('.label').textContent = `${answer.label} · ${answer.model}`;
  const t = m.timing;
  panel.querySelector('.meta').textContent =
    `${answer.usage.completion_tokens} tokens (${answer.finish_reason}) · ` +
    `latency ${fmt(t.queue_ms + t.generate_ms + t.score_ms, 0)} ms on the server` +
    (clientMs ? `, ${fmt(clientMs, 0)} ms here` : '') +
    ` · ${fmt(t.tokens_per_second, 1)} tokens/s · seed ${m.seed}`;
  const reward = panel.querySelector('.reward');
  reward.replaceChildren(
    el('strong', {}, 'reward ' + (m.reward === null ? m.reward_status : fmt(m.reward, 3))),
    ` · ${m.ruleset.id}` + (m.gates_fired.length ? ` · gate fired: ${m.gates_fired.join(', ')}` : ''),
  );
  const body = panel.querySelector('.rules tbody');
  body.replaceChildren(...m.rules.map((r, i) => el('tr', { class: 'rule-' + i + ' ' + r.decision },
    el('td', {}, r.rule),
    el('td', {}, fmt(r.weight, 2)),
    el('td', {}, r.decision.replace('_', ' ')),
    el('td', {}, fmt(r.counted_score ?? r.score, 3)),
    el('td', { class: 'codes' }, codes(r.hits || []) || '–'),
    el('td', {}, r.error ? `${r.outcome}: ${r.error}` : r.explanation),
  )));
  panel.dataset.state = 'done';
}

function failed(panel, message) {
  panel.querySelector('.content').textContent = message;
  panel.classList.add('error');
  panel.dataset.state = 'failed';
}

async function errorText(resp) {
  try { return (await resp.json()).error.message; } catch (_) { return `HTTP ${resp.status}`; }
}

// One model, streamed: text appears as it is generated; the scores come with the last chunk.
async function single(model, s, prompt) {
  const panel = newPanel('A');
  panel.querySelector('.label').textContent = `A · ${model}`;
  const messages = s.system ? [{ role: 'system', content: s.system }] : [];
  messages.push({ role: 'user', content: prompt });
  const body = { model, messages, stream: true, stream_options: { include_usage: true }, seed: s.seed, max_tokens: s.max_tokens, temperature: s.temperature, medrl: s.medrl };
  const started = performance.now();
  const resp = await fetch('/v1/chat/completions', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  if (!resp.ok) { failed(panel, await errorText(resp)); return; }
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  const content = panel.querySelector('.content');
  let buffer = '', text = '', last = null, usage = null;
  panel.dataset.state = 'streaming';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = event.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
      if (!data || data === '[DONE]') continue;
      const chunk = JSON.parse(data);
      if (chunk.error) { failed(panel, chunk.error.message); return; }
      const choice = chunk.choices[0];
      if (choice && choice.delta.content) { text += choice.delta.content; content.textContent = text; }
      if (chunk.medrl) last = { choice, chunk };
      if (chunk.usage) usage = chunk.usage;
    }
  }
  if (!last) { failed(panel, 'the stream ended without the final chunk'); return; }
  if (!usage) { failed(panel, 'the stream ended without its usage chunk'); return; }
  render(panel, { label: 'A', model, content: text, finish_reason: last.choice.finish_reason, usage, medrl: last.chunk.medrl }, performance.now() - started);
}

// Two models, same prompt and seed.
async function sideBySide(models, s, prompt, blind) {
  const panels = [newPanel('A'), newPanel('B')];
  if (!blind) panels.forEach((p, i) => { p.querySelector('.label').textContent = `${'AB'[i]} · ${models[i]}`; });
  const body = { models, prompt, system: s.system || undefined, seed: s.seed, max_tokens: s.max_tokens, temperature: s.temperature, blind, medrl: s.medrl };
  const started = performance.now();
  const resp = await fetch('/api/compare', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  if (!resp.ok) { const m = await errorText(resp); panels.forEach((p) => failed(p, m)); return; }
  const result = await resp.json();
  const clientMs = performance.now() - started;
  result.answers.forEach((a, i) => render(panels[i], a, clientMs));
  compareId = result.compare_id;
  $('vote').hidden = false;
  $('vote-status').textContent = blind ? 'The models are hidden until you vote.' : '';
  document.querySelectorAll('#vote button').forEach((b) => { b.disabled = false; });
}

async function vote(winner) {
  document.querySelectorAll('#vote button').forEach((b) => { b.disabled = true; });
  const resp = await fetch('/api/vote', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ compare_id: compareId, winner }) });
  if (!resp.ok) { $('vote-status').textContent = await errorText(resp); return; }
  const r = await resp.json();
  $('vote-status').textContent = `Vote recorded: ${winner}. A was ${r.A}, B was ${r.B}.`;
  $('vote').dataset.state = 'recorded';
  $('answer-a').querySelector('.label').textContent = `A · ${r.A}`;
  $('answer-b').querySelector('.label').textContent = `B · ${r.B}`;
}

async function ask(event) {
  event.preventDefault();
  const prompt = $('prompt').value.trim();
  if (!prompt) { setStatus('Type a question first.', true); return; }
  const a = $('model-a').value, b = $('model-b').value;
  const s = settings();
  $('answers').replaceChildren();
  $('vote').hidden = true;
  delete $('vote').dataset.state;
  $('run').disabled = true;
  setStatus(b ? `Asking ${$('blind').checked ? 'two hidden models' : a + ' and ' + b}…` : `Asking ${a}…`);
  try {
    if (b) await sideBySide([a, b], s, prompt, $('blind').checked); else await single(a, s, prompt);
    setStatus('');
  } catch (e) {
    setStatus(String(e), true);
  } finally {
    $('run').disabled = false;
  }
}

document.addEventListener('DOMContentLoaded', () => {
  $('ask').addEventListener('submit', ask);
  document.querySelectorAll('#vote button').forEach((b) => b.addEventListener('click', () => vote(b.dataset.winner)));
  load().catch((e) => setStatus('Could not load the server description: ' + e, true));
});

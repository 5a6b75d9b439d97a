// The driver's kiosk page (docs/KIOSK.md). Plain JavaScript, no framework, nothing loaded from
// anywhere but the unit: it talks only to waybilld's local API on the same origin.
//
// The rule the page keeps: nothing says "saved" before the unit answered 201, which it does only
// once the event is in the outbox on disk. Until then the driver's entries stay on screen, and a
// failure says in plain words what went wrong, so that the driver can try again. A delivery is up
// to three requests (photo, proof, delivery event): each one that succeeded is not sent again on
// a retry. Names and signatures stay in memory only and are never written to the console.
'use strict';

(function () {
  const STATUS_POLL_MS = 2000;
  const STATUS_TIMEOUT_MS = 3000;
  const SAVE_TIMEOUT_MS = 15000;  // a commit waits for fsync; a busy flash card can be slow
  const MANIFEST_EVERY_POLLS = 5;  // the stop list is read again every ~10 s
  const MAX_PHOTO_BYTES = 8 * 1024 * 1024;  // the unit's limit (PhotoStore::kMaxPhotoBytes)
  const PHOTO_MAX_SIDE_PX = 1600;  // larger photos are scaled down before they are sent
  const MAX_NAME_BYTES = 128;
  const MAX_SIGNATURE_POINTS = 4000;  // the unit accepts 4096
  const MAX_STROKES = 250;  // the unit accepts 256
  const MIN_POINT_STEP_PX = 2;  // closer points add bytes and nothing visible

  const REASONS = [
    ['recipient_absent', 'Nobody there'],
    ['refused', 'Refused'],
    ['address_not_found', 'Address not found'],
    ['access_blocked', 'No access'],
    ['damaged', 'Goods damaged'],
    ['other', 'Other reason'],
  ];
  const KIND_LABELS = {
    arrived: 'Arrived',
    delivered: 'Delivered',
    partial: 'Partial',
    failed: 'Failed',
    picked_up: 'Picked up',
  };

  const $ = (id) => document.getElementById(id);

  let manifest = null;      // GET /v1/manifest, or null before the first answer
  let current = null;       // the stop on screen
  let screen = 'list';
  let polls = 0;
  // Per stop_id, the Delivered form: {name, strokes, width, height, photo, photoUrl, photoSha,
  // proofSeq, deliverySeq}. In memory only: a reload starts the form afresh.
  const drafts = new Map();

  // ---- The local API ------------------------------------------------------------------------

  // One request; never throws. {ok, status, data, error}: `error` in plain words.
  async function api(method, path, body, contentType, timeoutMs) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), timeoutMs || SAVE_TIMEOUT_MS);
    const init = { method, signal: ctrl.signal, cache: 'no-store', headers: {} };
    if (body !== undefined) {
      init.body = body;
      init.headers['Content-Type'] = contentType || 'application/json';
    }
    try {
      let res;
      try {
        res = await fetch(path, init);
      } catch (e) {
        return {
          ok: false, status: 0, data: null,
          error: ctrl.signal.aborted ? 'the unit did not answer in time'
                                     : 'the unit did not answer',
        };
      }
      let data = null;
      try {
        data = await res.json();
      } catch (e) {
        data = null;
      }
      if (res.ok) return { ok: true, status: res.status, data, error: '' };
      return { ok: false, status: res.status, data, error: explain(res.status, data) };
    } finally {
      clearTimeout(timer);
    }
  }

  function explain(status, data) {
    const said = data && typeof data.error === 'string' ? data.error : '';
    const what = status === 507 ? 'the unit\'s storage is full'
               : status === 503 ? 'the unit could not store it'
               : status === 400 ? 'the unit refused it'
               : status === 404 ? 'the unit does not know this'
               : 'the unit answered with error ' + status;
    return said ? what + ' (' + said + ')' : what;
  }

  function postJson(path, obj) {
    return api('POST', path, JSON.stringify(obj), 'application/json');
  }

  // ---- Header: GNSS, connectivity, what waits to be sent, last acknowledgement -------------

  function setChip(id, text, cls) {
    const el = $(id);
    el.textContent = text;
    el.className = 'chip' + (cls ? ' ' + cls : '');
  }

  function clock(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return '';
    return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  }

  function showStatus(st) {
    const g = st.gnss || {};
    const mode = Number(g.mode || 1);
    const sats = g.sats !== undefined ? ' · ' + g.sats + ' sats' : '';
    if (mode >= 3) setChip('gnss', 'GPS 3D' + sats, 'good');
    else if (mode === 2) setChip('gnss', 'GPS 2D' + sats, 'warn');
    else setChip('gnss', 'GPS: no fix', 'bad');

    const ob = st.outbox || {};
    const waiting = Number(ob.events || 0);
    const important = Number(ob.deliveries || 0) + Number(ob.proofs || 0);
    const up = st.uplink || {};
    if (up.connected) setChip('link', 'Online', 'good');
    else setChip('link', 'Offline — ' + waiting + ' waiting', 'bad');
    setChip('waiting', 'To send: ' + waiting + (important ? ' (' + important + ' PoD)' : ''),
            important ? 'warn' : '');
    setChip('ack', up.last_ack ? 'Last sent: ' + clock(up.last_ack) : 'Last sent: never', '');
    $('waiting').dataset.events = String(waiting);
  }

  async function pollStatus() {
    const r = await api('GET', '/v1/status', undefined, undefined, STATUS_TIMEOUT_MS);
    $('unreachable').hidden = r.ok;
    if (r.ok && r.data) {
      showStatus(r.data);
    } else {
      // What the unit said last is stale now: only the last acknowledgement stays true.
      setChip('gnss', 'GPS: ?', '');
      setChip('link', 'Device not reachable', 'bad');
      setChip('waiting', 'To send: ?', '');
    }
    polls += 1;
    if (r.ok && screen === 'list' && polls % MANIFEST_EVERY_POLLS === 0) loadManifest();
    setTimeout(pollStatus, STATUS_POLL_MS);
  }

  // ---- The stop list ------------------------------------------------------------------------

  function windowText(stop) {
    const from = stop.window_start ? clock(stop.window_start) : '';
    const to = stop.window_end ? clock(stop.window_end) : '';
    if (from && to) return from + '–' + to;
    if (from) return 'from ' + from;
    if (to) return 'by ' + to;
    return 'any time';
  }

  function statusText(stop) {
    if (!stop.status) return 'To do';
    let text = KIND_LABELS[stop.status] || stop.status;
    if (stop.status === 'failed' && stop.reason) {
      const r = REASONS.find((x) => x[0] === stop.reason);
      text += ': ' + (r ? r[1] : stop.reason);
    }
    if (stop.status === 'partial' && stop.items !== null && stop.items !== undefined) {
      text += ' (' + stop.items + ')';
    }
    if (stop.proof && stop.status === 'delivered') text += ' ✓';
    return text;
  }

  function badge(el, stop) {
    el.textContent = statusText(stop);
    el.className = 'badge ' + (stop.status || 'todo');
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function stopName(stop) {
    return stop.address || stop.order_id || stop.stop_id;
  }

  function renderList() {
    const list = $('stops');
    list.textContent = '';
    const none = $('no-manifest');
    if (!manifest) {
      $('manifest-info').textContent = '';
      return;
    }
    const stops = (manifest.stops || []).slice().sort((a, b) => a.sequence - b.sequence);
    none.hidden = stops.length > 0;
    if (!stops.length) none.textContent = 'Today\'s manifest has no stops.';
    const done = stops.filter((s) => s.status && s.status !== 'arrived').length;
    $('manifest-info').textContent = done + ' of ' + stops.length + ' done';
    stops.forEach((stop, i) => {
      const li = el('li');
      const b = el('button', 'stop' + (stop.status && stop.status !== 'arrived' ? ' done' : ''));
      b.type = 'button';
      b.dataset.stopId = stop.stop_id;
      b.appendChild(el('span', 'seq', String(i + 1)));
      const main = el('span', 'stop-main');
      main.appendChild(el('div', 'stop-address', stopName(stop)));
      main.appendChild(el('div', 'stop-sub', windowText(stop) + ' · ' + stop.order_id));
      b.appendChild(main);
      const bd = el('span');
      badge(bd, stop);
      b.appendChild(bd);
      b.addEventListener('click', () => openStop(stop.stop_id));
      li.appendChild(b);
      list.appendChild(li);
    });
  }

  async function loadManifest() {
    const r = await api('GET', '/v1/manifest', undefined, undefined, STATUS_TIMEOUT_MS);
    if (r.ok && r.data) {
      manifest = r.data;
      if (current) {
        const fresh = findStop(current.stop_id);
        if (fresh) current = fresh;
      }
    } else if (r.status === 404) {
      manifest = null;
      $('no-manifest').hidden = false;
      $('no-manifest').textContent = 'No stops yet. Today\'s manifest comes from the office ' +
                                     'as soon as the unit is online.';
    } else if (!manifest) {
      $('no-manifest').hidden = false;
      $('no-manifest').textContent = 'The stop list cannot be read: ' + r.error + '.';
    }
    renderList();
    if (screen === 'stop' && current) renderStop();
    return r.ok;
  }

  function findStop(id) {
    return manifest ? (manifest.stops || []).find((s) => s.stop_id === id) || null : null;
  }

  // ---- Screens ------------------------------------------------------------------------------

  const SCREENS = {
    list: 'list-screen', stop: 'stop-screen', deliver: 'deliver-screen',
    partial: 'partial-screen', failed: 'failed-screen',
  };

  function show(name) {
    screen = name;
    for (const [key, id] of Object.entries(SCREENS)) $(id).hidden = key !== name;
    document.body.dataset.screen = name;
    if (name === 'list') renderList();
  }

  function message(id, text, kind) {
    const m = $(id);
    m.textContent = text;
    m.className = 'message' + (kind ? ' ' + kind : '');
  }

  function savedText(seq) {
    return 'Saved on this unit (#' + seq + ')';
  }

  function notSaved(error) {
    return 'Not saved: ' + error + '. Your entries are kept — try again.';
  }

  // ---- One stop -----------------------------------------------------------------------------

  function openStop(id) {
    current = findStop(id);
    if (!current) return;
    message('stop-message', '', '');
    renderStop();
    show('stop');
  }

  function renderStop() {
    const stops = (manifest.stops || []).slice().sort((a, b) => a.sequence - b.sequence);
    const n = stops.findIndex((s) => s.stop_id === current.stop_id) + 1;
    $('stop-title').textContent = 'Stop ' + n + ' of ' + stops.length;
    badge($('stop-badge'), current);
    $('stop-address').textContent = stopName(current);
    $('stop-details').textContent = 'Order ' + current.order_id + ' · ' + windowText(current);
  }

  function backToStop() {
    renderStop();
    show('stop');
  }

  // A delivery event for the stop on screen; true once the unit stored it.
  async function saveEvent(button, messageId, fields) {
    const label = button.textContent;
    button.disabled = true;
    button.textContent = 'Saving…';
    message(messageId, '', '');
    const body = Object.assign({ stop_id: current.stop_id, order_id: current.order_id }, fields);
    const r = await postJson('/v1/deliveries', body);
    button.disabled = false;
    if (!r.ok) {
      button.textContent = 'Try again';
      message(messageId, notSaved(r.error), 'error');
      return null;
    }
    button.textContent = label;
    return r.data.seq;
  }

  async function quickEvent(kind, button) {
    const seq = await saveEvent(button, 'stop-message', { kind });
    if (seq === null) return;
    button.textContent = KIND_LABELS[kind];
    message('stop-message', KIND_LABELS[kind] + ' — ' + savedText(seq), 'ok');
    await loadManifest();
  }

  // ---- Partial ------------------------------------------------------------------------------

  function openPartial() {
    $('partial-title').textContent = 'Partial — ' + stopName(current);
    $('items').value = '1';
    $('save-partial').textContent = 'Save';
    $('save-partial').classList.remove('saved');
    message('partial-message', '', '');
    show('partial');
  }

  function stepItems(delta) {
    const v = Math.max(0, Math.min(9999, (parseInt($('items').value, 10) || 0) + delta));
    $('items').value = String(v);
  }

  async function savePartial() {
    const button = $('save-partial');
    if (button.classList.contains('saved')) return backToStop();
    const text = $('items').value.trim();
    const items = Number(text);
    if (!/^\d+$/.test(text) || items > 9999) {
      message('partial-message', 'Type how many items were delivered, as a whole number.', 'error');
      return;
    }
    const seq = await saveEvent(button, 'partial-message', { kind: 'partial', items });
    if (seq === null) return;
    button.textContent = '‹ Back to stop';
    button.classList.add('saved');
    message('partial-message', savedText(seq), 'ok');
    await loadManifest();
  }

  // ---- Failed -------------------------------------------------------------------------------

  let reason = null;

  function openFailed() {
    reason = null;
    $('failed-title').textContent = 'Not delivered — ' + stopName(current);
    for (const b of $('reasons').children) b.setAttribute('aria-pressed', 'false');
    $('save-failed').textContent = 'Save';
    $('save-failed').classList.remove('saved');
    message('failed-message', '', '');
    show('failed');
  }

  function buildReasons() {
    for (const [code, text] of REASONS) {
      const b = el('button', 'reason', text);
      b.type = 'button';
      b.dataset.reason = code;
      b.setAttribute('aria-pressed', 'false');
      b.addEventListener('click', () => {
        reason = code;
        for (const o of $('reasons').children) {
          o.setAttribute('aria-pressed', String(o === b));
        }
        message('failed-message', '', '');
      });
      $('reasons').appendChild(b);
    }
  }

  async function saveFailed() {
    const button = $('save-failed');
    if (button.classList.contains('saved')) return backToStop();
    if (!reason) {
      message('failed-message', 'Choose why the delivery failed.', 'error');
      return;
    }
    const seq = await saveEvent(button, 'failed-message', { kind: 'failed', reason });
    if (seq === null) return;
    button.textContent = '‹ Back to stop';
    button.classList.add('saved');
    message('failed-message', savedText(seq), 'ok');
    await loadManifest();
  }

  // ---- Delivered: signature pad -------------------------------------------------------------

  // Draws `strokes` (integer points in a width x height box) scaled into `canvas`.
  function drawStrokes(canvas, strokes, width, height) {
    const rect = canvas.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, Math.round(rect.width * ratio));
    canvas.height = Math.max(1, Math.round(rect.height * ratio));
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (!width || !height) return;
    const scale = Math.min(canvas.width / width, canvas.height / height);
    ctx.strokeStyle = '#000';
    ctx.fillStyle = '#000';
    ctx.lineWidth = 3 * ratio;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    for (const stroke of strokes) {
      if (stroke.length === 1) {
        ctx.beginPath();
        ctx.arc(stroke[0][0] * scale, stroke[0][1] * scale, 2 * ratio, 0, 2 * Math.PI);
        ctx.fill();
        continue;
      }
      ctx.beginPath();
      ctx.moveTo(stroke[0][0] * scale, stroke[0][1] * scale);
      for (let i = 1; i < stroke.length; i += 1) {
        ctx.lineTo(stroke[i][0] * scale, stroke[i][1] * scale);
      }
      ctx.stroke();
    }
    canvas.dataset.strokes = String(strokes.length);
    canvas.dataset.points = String(strokes.reduce((n, s) => n + s.length, 0));
  }

  function pointCount(strokes) {
    return strokes.reduce((n, s) => n + s.length, 0);
  }

  function setupPad() {
    const pad = $('pad');
    let active = null;  // the pointer drawing now
    let stroke = null;

    function point(e) {
      const rect = pad.getBoundingClientRect();
      const d = draft();
      const x = Math.round(Math.min(Math.max(e.clientX - rect.left, 0), rect.width));
      const y = Math.round(Math.min(Math.max(e.clientY - rect.top, 0), rect.height));
      d.width = Math.round(rect.width);
      d.height = Math.round(rect.height);
      return [x, y];
    }

    function add(e) {
      const d = draft();
      if (pointCount(d.strokes) >= MAX_SIGNATURE_POINTS) return;
      const p = point(e);
      const last = stroke[stroke.length - 1];
      if (last && Math.abs(last[0] - p[0]) < MIN_POINT_STEP_PX &&
          Math.abs(last[1] - p[1]) < MIN_POINT_STEP_PX) {
        return;
      }
      stroke.push(p);
      const ctx = pad.getContext('2d');
      const ratio = pad.width / Math.max(1, d.width);
      ctx.strokeStyle = '#000';
      ctx.lineWidth = 3 * (window.devicePixelRatio || 1);
      ctx.lineCap = 'round';
      ctx.lineJoin = 'round';
      ctx.beginPath();
      const from = last || p;
      ctx.moveTo(from[0] * ratio, from[1] * ratio);
      ctx.lineTo(p[0] * ratio + (last ? 0 : 0.1), p[1] * ratio);
      ctx.stroke();
    }

    pad.addEventListener('pointerdown', (e) => {
      if (active !== null) return;
      const d = draft();
      if (d.strokes.length >= MAX_STROKES) {
        message('edit-message', 'The signature is too long: press Clear and sign again.', 'error');
        return;
      }
      e.preventDefault();
      active = e.pointerId;
      pad.setPointerCapture(e.pointerId);
      stroke = [];
      d.strokes.push(stroke);
      d.proofSeq = null;
      d.deliverySeq = null;
      $('pad-hint').hidden = true;
      add(e);
    });
    pad.addEventListener('pointermove', (e) => {
      if (e.pointerId !== active) return;
      e.preventDefault();
      const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
      for (const c of events.length ? events : [e]) add(c);
    });
    const end = (e) => {
      if (e.pointerId !== active) return;
      active = null;
      stroke = null;
    };
    pad.addEventListener('pointerup', end);
    pad.addEventListener('pointercancel', end);
  }

  function draft() {
    let d = drafts.get(current.stop_id);
    if (!d) {
      d = {
        name: '', strokes: [], width: 0, height: 0, photo: null, photoUrl: '', photoSha: null,
        proofSeq: null, deliverySeq: null,
      };
      drafts.set(current.stop_id, d);
    }
    return d;
  }

  function clearPad() {
    const d = draft();
    d.strokes = [];
    d.proofSeq = null;
    d.deliverySeq = null;
    drawStrokes($('pad'), [], 0, 0);
    $('pad-hint').hidden = false;
    message('edit-message', '', '');
  }

  function showThumb(img, d) {
    img.hidden = !d.photoUrl;
    if (d.photoUrl) img.src = d.photoUrl;
    else img.removeAttribute('src');
  }

  function openDeliver() {
    const d = draft();
    $('deliver-title').textContent = 'Delivered — ' + stopName(current);
    $('recipient').value = d.name;
    $('deliver-edit').hidden = false;
    $('deliver-review').hidden = true;
    message('edit-message', '', '');
    show('deliver');
    // Sized only now that the canvas is laid out.
    drawStrokes($('pad'), d.strokes, d.width, d.height);
    $('pad-hint').hidden = d.strokes.length > 0;
    $('photo-label').textContent = d.photo ? 'New photo' : 'Photo';
    showThumb($('photo-thumb'), d);
  }

  // A photo the unit takes (JPEG or PNG, at most 8 MiB): others are scaled down and re-encoded.
  async function preparePhoto(file) {
    const fits = (file.type === 'image/jpeg' || file.type === 'image/png') &&
                 file.size <= MAX_PHOTO_BYTES;
    if (fits) return file;
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(1, PHOTO_MAX_SIDE_PX / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement('canvas');
    canvas.width = Math.max(1, Math.round(bitmap.width * scale));
    canvas.height = Math.max(1, Math.round(bitmap.height * scale));
    canvas.getContext('2d').drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    return new Promise((resolve, reject) => {
      canvas.toBlob((b) => (b ? resolve(b) : reject(new Error('encode'))), 'image/jpeg', 0.85);
    });
  }

  async function takePhoto() {
    const input = $('photo');
    const file = input.files && input.files[0];
    input.value = '';
    if (!file) return;
    const d = draft();
    let photo;
    try {
      photo = await preparePhoto(file);
    } catch (e) {
      message('edit-message', 'This photo cannot be read. Take it again.', 'error');
      return;
    }
    if (d.photoUrl) URL.revokeObjectURL(d.photoUrl);
    d.photo = photo;
    d.photoUrl = URL.createObjectURL(photo);
    d.photoSha = null;
    d.proofSeq = null;
    d.deliverySeq = null;
    $('photo-label').textContent = 'New photo';
    showThumb($('photo-thumb'), d);
    message('edit-message', '', '');
  }

  function toReview() {
    const d = draft();
    d.name = $('recipient').value.trim();
    if (!d.name) {
      message('edit-message', 'Type the recipient\'s name first.', 'error');
      $('recipient').focus();
      return;
    }
    if (new TextEncoder().encode(d.name).length > MAX_NAME_BYTES) {
      message('edit-message', 'The name is too long: shorten it.', 'error');
      return;
    }
    if (!d.strokes.length && !d.photo) {
      message('edit-message', 'Ask the recipient to sign in the box (or add a photo).', 'error');
      return;
    }
    $('review-name').textContent = d.name;
    $('deliver-edit').hidden = true;
    $('deliver-review').hidden = false;
    showThumb($('review-thumb'), d);
    $('review-no-photo').hidden = !!d.photo;
    const save = $('save-proof');
    const done = d.deliverySeq !== null;
    save.textContent = done ? '‹ Back to stops' : 'Save';
    save.classList.toggle('saved', done);
    message('save-message', done ? savedText(d.deliverySeq) : '', done ? 'ok' : '');
    // Drawn again from the points that will be sent, not copied from the pad's pixels.
    drawStrokes($('review-pad'), d.strokes, d.width, d.height);
  }

  async function saveProof() {
    const button = $('save-proof');
    const d = draft();
    if (d.deliverySeq !== null) {
      show('list');
      return;
    }
    button.disabled = true;
    button.textContent = 'Saving…';
    $('back-to-edit').disabled = true;
    message('save-message', '', '');
    const fail = (what, r) => {
      button.disabled = false;
      $('back-to-edit').disabled = false;
      button.textContent = 'Try again';
      message('save-message', notSaved(what + r.error), 'error');
    };
    if (d.photo && !d.photoSha) {
      const r = await api('POST', '/v1/photos', d.photo, d.photo.type || 'image/jpeg');
      if (!r.ok) return fail('the photo: ', r);
      d.photoSha = r.data.sha256;
    }
    if (d.proofSeq === null) {
      const proof = {
        stop_id: current.stop_id,
        order_id: current.order_id,
        recipient_name: d.name,
      };
      if (d.strokes.length) {
        proof.signature = { width: d.width, height: d.height, strokes: d.strokes };
      }
      if (d.photoSha) proof.photo_sha256 = d.photoSha;
      const r = await postJson('/v1/proofs', proof);
      if (!r.ok) return fail('', r);
      d.proofSeq = r.data.seq;
    }
    const r = await postJson('/v1/deliveries', {
      stop_id: current.stop_id, order_id: current.order_id, kind: 'delivered',
    });
    if (!r.ok) return fail('', r);
    d.deliverySeq = r.data.seq;
    button.disabled = false;
    $('back-to-edit').disabled = false;
    button.textContent = '‹ Back to stops';
    button.classList.add('saved');
    message('save-message', savedText(d.deliverySeq), 'ok');
    await loadManifest();
  }

  // ---- Wiring -------------------------------------------------------------------------------

  function init() {
    buildReasons();
    setupPad();
    for (const b of document.querySelectorAll('[data-go]')) {
      b.addEventListener('click', () => {
        if (b.dataset.go === 'stop' && current) {
          backToStop();
        } else {
          show('list');
        }
      });
    }
    $('do-arrived').addEventListener('click', (e) => quickEvent('arrived', e.currentTarget));
    $('do-picked_up').addEventListener('click', (e) => quickEvent('picked_up', e.currentTarget));
    $('do-delivered').addEventListener('click', openDeliver);
    $('do-partial').addEventListener('click', openPartial);
    $('do-failed').addEventListener('click', openFailed);
    $('items-minus').addEventListener('click', () => stepItems(-1));
    $('items-plus').addEventListener('click', () => stepItems(1));
    $('save-partial').addEventListener('click', savePartial);
    $('save-failed').addEventListener('click', saveFailed);
    $('pad-clear').addEventListener('click', clearPad);
    $('photo').addEventListener('change', takePhoto);
    $('recipient').addEventListener('input', () => {
      const d = draft();
      d.name = $('recipient').value.trim();
      d.proofSeq = null;
      d.deliverySeq = null;
    });
    $('to-review').addEventListener('click', toReview);
    $('back-to-edit').addEventListener('click', openDeliver);
    $('save-proof').addEventListener('click', saveProof);
    window.addEventListener('resize', () => {
      if (screen === 'deliver' && current) {
        const d = draft();
        const review = !$('deliver-review').hidden;
        drawStrokes(review ? $('review-pad') : $('pad'), d.strokes, d.width, d.height);
      }
    });
    show('list');
    loadManifest();
    pollStatus();
  }

  document.addEventListener('DOMContentLoaded', init);
})();

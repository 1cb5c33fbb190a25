// The clinician viewer page: picks a user, loads where they are (/viewer/api/users/:id) and their
// audit records (/audit), then follows them live over Server-Sent Events (/events?after=<seq>):
// `user` (their stored record changed), `view` (a device got a new view), `audit` (a transition).
// Everything is written with textContent: nothing from the server is parsed as HTML.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const LEVELS = ['elevated', 'high', 'critical'];
  const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

  /** What the page shows for the current user. */
  let current = null;

  const formatTime = (ms) => {
    if (ms === null || ms === undefined) return '';
    return new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
  };
  const timeElement = (ms) => {
    const t = document.createElement('time');
    t.dateTime = new Date(ms).toISOString();
    t.textContent = formatTime(ms);
    return t;
  };
  const cell = (row, content, className) => {
    const td = document.createElement('td');
    if (content instanceof Node) td.append(content);
    else td.textContent = content === null || content === undefined ? '' : String(content);
    if (className) td.className = className;
    row.append(td);
    return td;
  };
  const change = (from, to) => (from === to ? to : `${from} → ${to}`);

  function setLive(state, text) {
    const live = $('live');
    live.dataset.state = state;
    live.textContent = text;
  }

  // ------------------------------------------------------------------ statechart highlight

  /** Marks the user's innermost states (their ancestors are implied: regions stay unmarked). */
  function highlight(stateIds) {
    for (const g of document.querySelectorAll('#chart [data-state-id]')) {
      const leaf = g.dataset.stateType === 'atomic' || g.dataset.stateType === 'final';
      const on = leaf && stateIds.includes(g.dataset.stateId);
      g.classList.toggle('current', on);
      if (on) g.setAttribute('aria-current', 'true');
      else g.removeAttribute('aria-current');
    }
  }

  // ------------------------------------------------------------------ current state and devices

  function renderUser() {
    const { user } = current;
    const summary = $('summary');
    if (!user) {
      summary.textContent = `No record for user ${current.userId} yet. The page updates when their first event arrives.`;
      highlight([]);
      return;
    }
    const value = user.value || {};
    const parts = [`Subscription: ${value.subscription}`];
    if (user.crisis) {
      parts.push(`Crisis: ${value.crisis} (level ${user.crisis.level}, ${user.crisis.source}, since ${formatTime(user.crisis.since)})`);
    } else {
      parts.push(`Crisis: ${value.crisis}`);
    }
    if (user.graceEndsAt) parts.push(`Grace period (${user.graceReason}) ends ${formatTime(user.graceEndsAt)}`);
    if (user.trialEndsAt) parts.push(`Trial ends ${formatTime(user.trialEndsAt)}`);
    if (user.servedBy) parts.push(`Served by ${user.servedBy.nodeId ?? 'no node yet'} (partition ${user.servedBy.partition})`);
    summary.textContent = parts.join(' · ');
    summary.dataset.subscription = value.subscription;
    summary.dataset.crisis = value.crisis;
    highlight(user.activeStateIds);
  }

  function renderDevices() {
    const table = $('devices');
    const body = table.tBodies[0];
    body.replaceChildren();
    const ids = current.user ? current.user.devices : [];
    $('devices-empty').textContent = ids.length ? '' : current.user ? 'No registered device.' : 'No record for this user.';
    $('devices-empty').hidden = ids.length > 0;
    table.hidden = ids.length === 0;
    for (const deviceId of ids) {
      const view = current.views.get(deviceId);
      const row = document.createElement('tr');
      row.dataset.deviceId = deviceId;
      const th = document.createElement('th');
      th.scope = 'row';
      th.textContent = deviceId;
      row.append(th);
      if (!view) {
        cell(row, 'no view yet').colSpan = 6;
      } else {
        row.dataset.version = String(view.version);
        row.dataset.crisis = String(view.crisis.active);
        cell(row, `v${view.version}`, 'num');
        cell(row, view.tier);
        cell(row, view.status);
        cell(row, view.crisis.active ? `ON (${view.crisis.level})` : 'off', view.crisis.active ? 'crisis-on' : '');
        cell(row, view.features.join(', '), 'features');
        cell(row, timeElement(view.issuedAt));
      }
      body.append(row);
    }
  }

  // ------------------------------------------------------------------ timeline and episodes

  /** Crisis episodes: from a record that enters `crisis.active` to the one that leaves it. */
  function crisisEpisodes(entries) {
    const episodes = [];
    let open = null;
    entries.forEach((e, i) => {
      // An episode starts on entering `active`, or with the first record shown when that one
      // already begins in `active` (older records left out).
      const starts = e.from.crisis === 'active' ? i === 0 : e.to.crisis === 'active';
      if (!open && starts) {
        open = { number: episodes.length + 1, start: e.from.crisis === 'active' ? null : e, end: null, peak: e.crisisLevel, seqs: [] };
        episodes.push(open);
      }
      if (!open) return;
      open.seqs.push(e.seq);
      if (e.crisisLevel && LEVELS.indexOf(e.crisisLevel) > LEVELS.indexOf(open.peak)) open.peak = e.crisisLevel;
      if (e.to.crisis !== 'active') {
        open.end = e;
        open = null;
      }
    });
    return episodes;
  }

  function renderTimeline() {
    const entries = current.entries;
    const episodes = crisisEpisodes(entries);
    const episodeOf = new Map();
    for (const ep of episodes) for (const seq of ep.seqs) episodeOf.set(seq, ep);

    const list = $('episodes');
    list.replaceChildren();
    for (const ep of episodes) {
      const li = document.createElement('li');
      li.className = 'episode' + (ep.end ? '' : ' ongoing');
      li.dataset.episode = String(ep.number);
      const started = ep.start ? `started ${formatTime(ep.start.at)} (${ep.start.eventType})` : 'started before the records shown';
      const ended = ep.end ? `resolved ${formatTime(ep.end.at)} (${ep.end.eventType})` : 'ongoing';
      li.textContent = `Crisis episode ${ep.number}: ${started}, ${ended}; highest level ${ep.peak || 'unknown'}.`;
      list.append(li);
    }
    $('episodes-empty').hidden = episodes.length > 0;

    const body = $('timeline').tBodies[0];
    body.replaceChildren();
    entries.forEach((e, i) => {
      const row = document.createElement('tr');
      row.dataset.seq = String(e.seq);
      row.dataset.eventType = e.eventType;
      const ep = episodeOf.get(e.seq);
      if (ep) {
        row.classList.add('in-crisis');
        row.dataset.episode = String(ep.number);
      }
      cell(row, i + 1, 'num');
      cell(row, timeElement(e.at));
      cell(row, e.eventType, 'event');
      cell(row, change(e.from.subscription, e.to.subscription));
      const crisis = cell(row, change(e.from.crisis, e.to.crisis));
      if (ep) {
        const mark = document.createElement('span');
        mark.className = 'episode-mark';
        mark.textContent = ep.start === e ? ` episode ${ep.number} starts` : ep.end === e ? ` episode ${ep.number} ends` : ` episode ${ep.number}`;
        crisis.append(mark);
      }
      cell(row, e.crisisLevel || '');
      cell(row, e.viewVersion === null ? '' : `v${e.viewVersion}`, 'num');
      body.append(row);
    });
    $('timeline-note').textContent = current.truncated
      ? `The newest ${entries.length} changes of state, oldest first (older records are not shown).`
      : `${entries.length} change${entries.length === 1 ? '' : 's'} of state from the audit stream, oldest first.`;
  }

  // ------------------------------------------------------------------ loading and following

  async function getJson(url) {
    const res = await fetch(url, { headers: { accept: 'application/json' }, credentials: 'same-origin' });
    if (res.status === 401) {
      window.location.assign('/viewer');
      throw new Error('session expired');
    }
    if (res.status === 404) return null;
    if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
    return res.json();
  }

  async function show(userId) {
    if (current && current.source) current.source.close();
    const state = { userId, user: null, views: new Map(), entries: [], lastSeq: 0, truncated: false, source: null };
    current = state;
    setLive('loading', `Loading user ${userId}…`);
    const base = `/viewer/api/users/${encodeURIComponent(userId)}`;
    try {
      const [found, timeline] = await Promise.all([getJson(base), getJson(`${base}/audit`)]);
      if (current !== state) return;
      if (found) {
        state.user = found.user;
        for (const v of found.devices) state.views.set(v.deviceId, v);
      }
      state.entries = timeline.entries;
      state.lastSeq = timeline.lastSeq;
      state.truncated = timeline.truncated;
    } catch (err) {
      if (current === state) setLive('error', `Could not load user ${userId}: ${err.message}`);
      return;
    }
    renderUser();
    renderDevices();
    renderTimeline();
    follow(state, base);
  }

  function follow(state, base) {
    const source = new EventSource(`${base}/events?after=${state.lastSeq}`);
    state.source = source;
    source.addEventListener('open', () => setLive('live', `Following user ${state.userId}: live.`));
    source.addEventListener('error', () => {
      if (current !== state) return;
      // The browser retries by itself unless the server refused (e.g. the session expired: 401).
      if (source.readyState === EventSource.CLOSED) {
        setLive('error', `Live updates for user ${state.userId} stopped. Reload the page (your session may have expired).`);
      } else {
        setLive('reconnecting', `Following user ${state.userId}: connection lost, reconnecting…`);
      }
    });
    source.addEventListener('user', (m) => {
      if (current !== state) return;
      // A live update carries the record only: who serves the user stays as last read.
      state.user = { servedBy: state.user?.servedBy, ...JSON.parse(m.data) };
      renderUser();
      renderDevices();
    });
    source.addEventListener('view', (m) => {
      if (current !== state) return;
      const view = JSON.parse(m.data);
      const held = state.views.get(view.deviceId);
      if (!held || held.version <= view.version) state.views.set(view.deviceId, view);
      renderDevices();
    });
    source.addEventListener('audit', (m) => {
      if (current !== state) return;
      const entry = JSON.parse(m.data);
      if (entry.seq <= state.lastSeq) return;
      state.entries.push(entry);
      state.lastSeq = entry.seq;
      renderTimeline();
    });
  }

  function userFromHash() {
    const match = /(?:^#|&)user=([^&]+)/.exec(window.location.hash);
    const id = match ? decodeURIComponent(match[1]) : '';
    return ID_PATTERN.test(id) ? id : null;
  }

  document.addEventListener('DOMContentLoaded', () => {
    const input = $('user-id');
    $('picker').addEventListener('submit', (e) => {
      e.preventDefault();
      const id = input.value.trim();
      if (!ID_PATTERN.test(id)) {
        setLive('error', 'A user id is 1 to 64 letters, digits, "_" or "-".');
        input.focus();
        return;
      }
      if (userFromHash() !== id) window.history.replaceState(null, '', `#user=${encodeURIComponent(id)}`);
      show(id);
    });
    $('fit').addEventListener('click', () => {
      const fit = $('fit').getAttribute('aria-pressed') !== 'true';
      $('fit').setAttribute('aria-pressed', String(fit));
      $('chart').classList.toggle('fit', fit);
    });
    window.addEventListener('hashchange', () => {
      const id = userFromHash();
      if (id && (!current || current.userId !== id)) {
        input.value = id;
        show(id);
      }
    });
    const initial = userFromHash();
    if (initial) {
      input.value = initial;
      show(initial);
    } else {
      input.focus();
    }
  });
})();

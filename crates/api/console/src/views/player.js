// The terminal replay of an SSH session with a pty: asciinema-player over the session's
// asciicast, with its own play/pause and seek controls and a speed selector of ours.
//
// The recording is fetched once through the API client (so a failure shows witness's message)
// and handed to the player as data; changing the speed recreates the player from that same text
// at the position it had, since the player takes its speed only when it is created.

import * as AsciinemaPlayer from 'asciinema-player';

import * as api from '../api.js';
import { showError } from '../banner.js';
import { h, replace } from '../dom.js';

const SPEEDS = [0.5, 1, 2, 4];

/** Builds the player section for `sessionId` into `section`; disposes the player when `signal` aborts. */
export async function renderPlayer(section, sessionId, { live, signal }) {
  const holder = h('div', { id: 'player', class: 'player' }, h('p', { class: 'muted player-loading' }, 'Loading the recording…'));
  const speed = h('select', { id: 'player-speed', 'aria-label': 'Playback speed' },
    SPEEDS.map((s) => h('option', { value: s, selected: s === 1 }, `${s}×`)));
  const reload = live ? h('button', { type: 'button', class: 'button button-quiet' }, 'Reload recording') : null;
  // `replace` rather than `append`: it skips the `null` parts, which `append` would print.
  replace(section,
    h('div', { class: 'section-head' },
      h('h2', {}, 'Terminal'),
      h('div', { class: 'player-tools' },
        h('label', { class: 'inline-field' }, 'Speed ', speed),
        reload,
        h('a', { class: 'button button-quiet', href: `/api/sessions/${encodeURIComponent(sessionId)}/asciicast`, download: `${sessionId}.cast` }, 'Download .cast'))),
    live ? h('p', { class: 'note' }, 'This session is still open: the replay holds what was recorded when it was loaded.') : null,
    holder);

  let cast;
  let player = null;
  let playing = false;

  const create = ({ at = 0, autoPlay = false } = {}) => {
    player?.dispose();
    holder.replaceChildren();
    playing = autoPlay;
    player = AsciinemaPlayer.create({ data: cast }, holder, {
      controls: true,
      speed: Number(speed.value),
      startAt: at,
      autoPlay,
      fit: 'width',
      terminalFontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace',
    });
    player.addEventListener('play', () => { playing = true; });
    player.addEventListener('playing', () => { playing = true; });
    player.addEventListener('pause', () => { playing = false; });
    player.addEventListener('ended', () => { playing = false; });
  };

  const load = async () => {
    try {
      cast = await api.asciicast(sessionId);
    } catch (e) {
      if (signal.aborted) return;
      holder.replaceChildren(h('p', { class: 'form-error' }, `The terminal recording could not be loaded: ${e.message}`));
      showError(`Terminal recording: ${e.message}`, 'player');
      return;
    }
    if (!signal.aborted) create();
  };

  speed.addEventListener('change', () => {
    if (!player) return;
    create({ at: player.getCurrentTime() ?? 0, autoPlay: playing });
  });
  reload?.addEventListener('click', load);
  signal.addEventListener('abort', () => player?.dispose(), { once: true });
  await load();
}

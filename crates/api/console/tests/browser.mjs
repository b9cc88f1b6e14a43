// The console's end-to-end test: a headless Chromium drives the real console against a running
// witness (started, with PostgreSQL and sshd, by the Rust integration test that runs this script)
// and checks what a reviewer would: login refusals, filtering, an SQL session's timeline and
// result rows, a terminal replay, deciding an approval, ending a live session, asking for and
// getting another reviewer's grant to read a recording a review rule covers, and the audit trail.
//
// Every wait has a deadline and waits for a condition, never for a fixed time. On failure it says
// which step failed and why, saves failure.png, and exits 1.
//
// Env: WITNESS_URL, WITNESS_ADMIN_TOKEN, WITNESS_AGENT_TOKEN, WITNESS_SQL_TASK, WITNESS_SHELL_TASK,
// WITNESS_APPROVAL_TEXT, WITNESS_LIVE_TASK (a session left open to be ended), WITNESS_COVERED_TASK
// and WITNESS_COVERED_TEXT (a session a review rule covers, and what it shows once granted),
// WITNESS_GRANTER_TOKEN (a reviewer other than the admin who may grant it); optional
// WITNESS_SHELL_TEXT (output the replay must show), WITNESS_SCREENSHOTS (a directory) and
// CHROMIUM (the browser).

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

/** How long one condition may take to hold; generous, since a loaded 2-core machine plays a replay slowly. */
const WAIT_MS = 30_000;
/** A hung browser must not hang the Rust test that runs this: give up on the whole run after this. */
const OVERALL_MS = 180_000;

const env = readEnv();
const screenshots = process.env.WITNESS_SCREENSHOTS || null;

/** Uncaught exceptions in the page and failed API calls, printed when a step fails. */
const pageErrors = [];
const apiFailures = [];

let browser;
let page;
let currentStep = 'starting the browser';

const watchdog = setTimeout(() => fail(new Error(`the whole test took over ${OVERALL_MS / 1000} s`)), OVERALL_MS);

try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
    headless: true,
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on('pageerror', (error) => pageErrors.push(error.message));
  page.on('response', (response) => {
    if (response.url().includes('/api/') && response.status() >= 400) {
      apiFailures.push(`${response.request().method()} ${new URL(response.url()).pathname} → ${response.status()}`);
    }
  });

  await step('1. the agent token is refused with the 403 message', async () => {
    await page.goto(`${env.url}/#/login`);
    await page.locator('#login-token').waitFor();
    await shot('login.png');
    await logIn(env.agentToken);
    const error = page.locator('#login-error');
    await error.waitFor({ state: 'visible' }).catch(() => {
      throw new Error('#login-error did not appear after logging in with the agent token');
    });
    const text = (await error.textContent()).trim();
    check(/role/i.test(text), `#login-error should explain that the agent has no role, but says "${text}"`);
    check(location().startsWith('#/login'), `the agent should stay on the login page, but is at ${location()}`);
  });

  await step('2. the admin token logs in to the sessions page', async () => {
    await logIn(env.adminToken);
    await page.locator('table#sessions').waitFor().catch(() => {
      throw new Error(`table#sessions did not appear after logging in as admin (at ${location()})`);
    });
    check(location().startsWith('#/sessions'), `after login the page should be #/sessions, but is ${location()}`);
    const firstTime = page.locator('table#sessions time').first();
    await firstTime.waitFor().catch(() => {
      throw new Error('no <time> in table#sessions');
    });
    const shown = (await firstTime.textContent()).trim();
    check(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d$/.test(shown), `times should show their offset from UTC, but one reads "${shown}"`);
  });

  await step(`3. the SQL session of task ${env.sqlTask} shows its SELECT with result rows`, async () => {
    await openSessionOfTask(env.sqlTask, 'sessions.png');
    await page.locator('#session-header').waitFor();
    const badge = page.locator('#session-header .verify-badge');
    await badge.waitFor();
    const verify = (await badge.textContent()).trim();
    check(['verified', 'pending', 'failed'].includes(verify), `.verify-badge should say verified, pending or failed, not "${verify}"`);

    const select = page.locator('#timeline .timeline-row[data-kind="pg.query"], #timeline .timeline-row[data-kind="pg.execute"]')
      .filter({ hasText: /select/i })
      .first();
    await select.waitFor().catch(() => {
      throw new Error('no pg.query or pg.execute row containing "select" in #timeline');
    });
    await select.click();
    await page.locator('#timeline .result-table').first().waitFor({ state: 'visible' }).catch(() => {
      throw new Error('clicking the SELECT row did not show a .result-table');
    });
    await shot('session-sql.png');
    // Recorded content is shown as text: markup an agent put in a statement or a result (the
    // Rust test records one that would retitle the page) never runs.
    const rows = page.locator('#timeline .timeline-row');
    for (let i = 0; i < (await rows.count()); i += 1) await rows.nth(i).click();
    check((await page.title()) !== 'pwned', 'recorded markup ran in the console (the page title was changed)');
  });

  await step(`4. the SSH session of task ${env.shellTask} replays its terminal`, async () => {
    await page.locator('#nav-sessions').click();
    await openSessionOfTask(env.shellTask);
    const player = page.locator('#player .ap-player');
    await player.waitFor().catch(() => {
      throw new Error('#player holds no asciinema player (.ap-player)');
    });
    check(await page.locator('#player-speed').isVisible(), '#player-speed (the speed selector) should be visible');

    const before = await playerState();
    // The big start button covers the terminal until the first play; the control bar's button
    // works after that.
    const start = page.locator('#player .ap-overlay-start');
    if (await start.isVisible()) await start.click();
    else await page.locator('#player .ap-playback-button').click();
    await page.waitForFunction(
      ([timer, text]) => {
        const now = document.querySelector('#player .ap-timer')?.textContent ?? '';
        const term = document.querySelector('#player .ap-term')?.textContent ?? '';
        return now !== timer || term.trim() !== text.trim();
      },
      [before.timer, before.text],
      { timeout: WAIT_MS },
    ).catch(() => {
      throw new Error(`the player did not move after pressing play (timer stayed "${before.timer}", terminal unchanged)`);
    });
    if (env.shellText) {
      // The recorded output itself, played back into the terminal.
      await page.waitForFunction(
        (text) => (document.querySelector('#player .ap-term')?.textContent ?? '').includes(text),
        env.shellText,
        { timeout: WAIT_MS },
      ).catch(() => {
        throw new Error(`the replayed terminal never showed "${env.shellText}"`);
      });
    }
    await shot('session-shell.png');
  });

  await step('5. the held statement, counted in the nav bar, is approved from the inbox with a reason', async () => {
    const count = page.locator('#nav-approvals .nav-count:not([hidden])');
    await count.waitFor().catch(() => {
      throw new Error('the nav bar shows no count of waiting approvals');
    });
    check(Number(await count.textContent()) >= 1, `the nav bar counts ${await count.textContent()} waiting`);
    await page.locator('#nav-approvals').click();
    const approval = page.locator('.approval').filter({
      has: page.locator('.approval-statement', { hasText: env.approvalText }),
    }).first();
    await approval.waitFor().catch(() => {
      throw new Error(`no .approval whose statement contains "${env.approvalText}"`);
    });
    const id = await approval.getAttribute('data-approval-id');
    check(id, 'the .approval has no data-approval-id');
    await shot('approvals.png');
    await approval.locator('.approval-reason').fill('checked with the owner');
    await approval.locator('.approve').click();
    await page.locator(`.approval[data-approval-id="${id}"]`).waitFor({ state: 'detached' }).catch(() => {
      throw new Error(`approval ${id} was still listed after clicking Approve`);
    });
  });

  await step(`5b. the live session of task ${env.liveTask} is ended from its page, with a reason`, async () => {
    await page.locator('#nav-sessions').click();
    await openSessionOfTask(env.liveTask);
    const reason = page.locator('#end-session #end-reason');
    await reason.waitFor().catch(() => {
      throw new Error('the page of a live session shows an admin no #end-reason field');
    });
    await reason.fill('stuck in a loop, ended from the browser');
    await page.locator('#end-session button[type=submit]').click();
    const ended = page.locator('.session-header .end-reason', { hasText: 'ended this session: stuck in a loop, ended from the browser' });
    await ended.waitFor().catch(() => {
      throw new Error('the session page never showed the end with the reason given');
    });
    check(await page.locator('#end-session').isHidden(), 'the end form stays once the session has ended');
  });

  await step(`5c. the session of task ${env.coveredTask}, under a review rule, opens once another reviewer grants it`, async () => {
    await page.locator('#nav-sessions').click();
    await openSessionOfTask(env.coveredTask);
    const panel = page.locator('#access');
    await panel.waitFor().catch(() => {
      throw new Error('the page of a covered session shows no #access panel');
    });
    check(!(await page.locator('#timeline').textContent()).includes(env.coveredText), 'the covered statement is shown before any grant');
    await page.locator('#access-reason').fill('TICKET-88 payroll check');
    await page.locator('#access-ask').click();
    await page.locator('#access-status', { hasText: 'waits for a reviewer' }).waitFor().catch(async () => {
      throw new Error(`after asking, #access-status says "${await page.locator('#access-status').textContent()}"`);
    });
    await shot('access-pending.png');

    // Another reviewer, in a browser of their own, grants it from the Approvals page.
    const granterContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const granter = await granterContext.newPage();
    granter.setDefaultTimeout(WAIT_MS);
    granter.on('pageerror', (error) => pageErrors.push(`(granter) ${error.message}`));
    await granter.goto(`${env.url}/#/login`);
    await granter.locator('#login-token').fill(env.granterToken);
    await granter.locator('#login-submit').click();
    await granter.locator('#nav-approvals').click();
    const request = granter.locator('.access-request').filter({ hasText: 'TICKET-88 payroll check' }).first();
    await request.waitFor().catch(() => {
      throw new Error('the other reviewer\'s Approvals page lists no .access-request with the reason given');
    });
    await request.locator('.approval-reason').fill('payroll owner agreed');
    await request.locator('.grant').click();
    await request.waitFor({ state: 'detached' }).catch(() => {
      throw new Error('the read request was still listed after clicking Grant');
    });
    await granterContext.close();

    // The reader's page notices the grant and opens the recording.
    await page.locator('#timeline .timeline-row', { hasText: env.coveredText }).first().waitFor().catch(() => {
      throw new Error(`after the grant, #timeline never showed "${env.coveredText}"`);
    });
    check(await page.locator('#access').count() === 0, 'the #access panel stays once the recording is open');
    await shot('access-granted.png');
  });

  await step('6. the audit trail names the admin as having viewed a recording', async () => {
    const me = await page.evaluate(async () => (await fetch('/api/me', { credentials: 'same-origin' })).json());
    check(me?.identity, `/api/me gave no identity: ${JSON.stringify(me)}`);
    await page.locator('#nav-audit').click();
    await page.locator('table#audit').waitFor();
    const viewed = page.locator('table#audit tbody tr').filter({ hasText: 'recording.viewed' }).filter({ hasText: me.identity });
    await viewed.first().waitFor().catch(() => {
      throw new Error(`table#audit has no recording.viewed row naming ${me.identity}`);
    });
    await shot('audit.png');
  });

  await step('7. the page threw no uncaught errors', async () => {
    check(pageErrors.length === 0, `uncaught errors in the page: ${pageErrors.join(' | ')}`);
  });

  console.log('browser test: all steps passed');
  clearTimeout(watchdog);
  await browser.close();
  process.exit(0);
} catch (error) {
  await fail(error);
}

// === Steps and checks ===

async function step(name, body) {
  currentStep = name;
  await body();
  console.log(`ok: ${name}`);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function location() {
  return new URL(page.url()).hash;
}

async function logIn(token) {
  await page.locator('#login-token').fill(token);
  await page.locator('#login-submit').click();
}

/** Filters the sessions page by task, checks every row matches, and opens the first. */
async function openSessionOfTask(task, screenshot) {
  await page.locator('#filter-task').fill(task);
  await page.locator('#filter-apply').click();
  await page.waitForFunction((t) => new URLSearchParams(location.hash.split('?')[1] ?? '').get('task') === t, task)
    .catch(() => {
      throw new Error(`applying the task filter did not put task=${task} in the hash (at ${location()})`);
    });
  // Rows of the unfiltered list may still be on screen until the filtered answer arrives.
  await page.waitForFunction((t) => {
    const rows = [...document.querySelectorAll('table#sessions tbody tr[data-session-id]')];
    return rows.length > 0 && rows.every((row) => row.querySelector('.col-task')?.textContent.includes(t));
  }, task).catch(async () => {
    const tasks = await page.locator('table#sessions tbody tr .col-task').allTextContents();
    throw new Error(`filtering by task ${task} should list only its sessions (at least one); rows have tasks [${tasks.join(', ')}]`);
  });
  if (screenshot) await shot(screenshot);
  const row = page.locator('table#sessions tbody tr[data-session-id]').first();
  const id = await row.getAttribute('data-session-id');
  await row.click();
  await page.waitForFunction((sid) => location.hash === `#/sessions/${encodeURIComponent(sid)}`, id).catch(() => {
    throw new Error(`clicking the session row did not open #/sessions/${id} (at ${location()})`);
  });
}

async function playerState() {
  return page.evaluate(() => ({
    timer: document.querySelector('#player .ap-timer')?.textContent ?? '',
    text: document.querySelector('#player .ap-term')?.textContent ?? '',
  }));
}

async function shot(name) {
  if (!screenshots) return;
  await mkdir(screenshots, { recursive: true });
  await page.screenshot({ path: join(screenshots, name) });
}

async function fail(error) {
  clearTimeout(watchdog);
  console.error(`browser test failed at step "${currentStep}": ${error.message}`);
  if (pageErrors.length > 0) console.error(`uncaught errors in the page: ${pageErrors.join(' | ')}`);
  if (apiFailures.length > 0) console.error(`failed API calls: ${apiFailures.join(', ')}`);
  if (page) {
    const dir = screenshots || '/tmp';
    try {
      await mkdir(dir, { recursive: true });
      await page.screenshot({ path: join(dir, 'failure.png'), fullPage: true, timeout: 5000 });
      console.error(`page at failure: ${page.url()}; screenshot in ${join(dir, 'failure.png')}`);
    } catch (e) {
      console.error(`could not save failure.png: ${e.message}`);
    }
  }
  await browser?.close().catch(() => {});
  process.exit(1);
}

function readEnv() {
  const names = {
    url: 'WITNESS_URL',
    adminToken: 'WITNESS_ADMIN_TOKEN',
    agentToken: 'WITNESS_AGENT_TOKEN',
    sqlTask: 'WITNESS_SQL_TASK',
    shellTask: 'WITNESS_SHELL_TASK',
    approvalText: 'WITNESS_APPROVAL_TEXT',
    liveTask: 'WITNESS_LIVE_TASK',
    coveredTask: 'WITNESS_COVERED_TASK',
    coveredText: 'WITNESS_COVERED_TEXT',
    granterToken: 'WITNESS_GRANTER_TOKEN',
  };
  const values = {};
  const missing = [];
  for (const [key, name] of Object.entries(names)) {
    values[key] = process.env[name];
    if (!values[key]) missing.push(name);
  }
  if (missing.length > 0) {
    console.error(`browser test: set ${missing.join(', ')} (see the comment at the top of tests/browser.mjs)`);
    process.exit(1);
  }
  values.url = values.url.replace(/\/+$/, '');
  values.shellText = process.env.WITNESS_SHELL_TEXT || '';
  return values;
}

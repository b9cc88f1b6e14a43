// Single sign-on into the console, end to end in headless Chromium (playwright-core): the
// console's "Log in with single sign-on" link, the OpenID provider's own login and consent
// pages, and back to witness logged in. Then an identity without a role is sent back to the login
// page with witness's reason. Run by crates/witness/tests/console.rs, which starts witness with
// `[console.oidc]` and the test provider (crates/testkit/oidc/provider.mjs).
//
// Env: WITNESS_URL, WITNESS_OIDC_PERSON (has a role), WITNESS_OIDC_STRANGER (has none);
// optional CHROMIUM. Every wait waits for a condition, with a deadline. Prints
// `oidc login test: all steps passed` and exits 0, or names the failed step and exits 1.

import { chromium } from 'playwright-core';

const WAIT_MS = 15_000;
const url = (process.env.WITNESS_URL ?? '').replace(/\/+$/, '');
const person = process.env.WITNESS_OIDC_PERSON;
const stranger = process.env.WITNESS_OIDC_STRANGER;
if (!url || !person || !stranger) {
  console.error('oidc login test: set WITNESS_URL, WITNESS_OIDC_PERSON and WITNESS_OIDC_STRANGER');
  process.exit(1);
}

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
const page = await browser.newPage();
page.setDefaultTimeout(WAIT_MS);
let current = 'starting';

try {
  current = `1. ${person} logs in through the provider and lands on the sessions page`;
  await signIn(person);
  await page.locator('table#sessions').waitFor();
  const me = await page.evaluate(async () => (await fetch('/api/me')).json());
  check(me.identity === person, `/api/me says ${JSON.stringify(me)}, not ${person}`);
  check(me.roles.includes('admin'), `${person} should be an admin: ${JSON.stringify(me)}`);
  console.log(`ok: ${current}`);

  current = '2. logging out ends the login';
  await page.locator('#logout').click();
  await page.locator('#login-token').waitFor();
  const after = await page.evaluate(async () => (await fetch('/api/me')).status);
  check(after === 401, `/api/me answered ${after} after logging out`);
  console.log(`ok: ${current}`);

  current = `3. ${stranger}, who has no role, is sent back to the login page with the reason`;
  await signIn(stranger);
  const error = page.locator('#login-error');
  await error.waitFor({ state: 'visible' });
  const text = await error.textContent();
  check(text.includes(`${stranger} has no role`), `#login-error says "${text}"`);
  console.log(`ok: ${current}`);

  console.log('oidc login test: all steps passed');
  await browser.close();
} catch (e) {
  console.error(`oidc login test failed at step "${current}": ${e.message}`);
  console.error(`page at failure: ${page.url()}`);
  await page.screenshot({ path: '/tmp/oidc-login-failure.png' }).catch(() => {});
  await browser.close().catch(() => {});
  process.exit(1);
}

/** From the console's login page through the provider's login (and consent) pages, back to witness. */
async function signIn(login) {
  // A fresh provider session for each person: the provider would otherwise remember the last one.
  await page.context().clearCookies();
  await page.goto(`${url}/#/login`);
  await page.locator('#login-sso').click();
  const name = page.locator('input[name="login"]');
  await name.waitFor();
  await name.fill(login);
  await page.locator('input[name="password"]').fill('any password');
  await page.locator('button[type="submit"]').click();
  // Then consent (once per person and client), until the provider sends the browser back.
  const deadline = Date.now() + WAIT_MS;
  while (!page.url().startsWith(url)) {
    check(Date.now() < deadline, `still at the provider (${page.url()})`);
    const button = page.locator('button[type="submit"]');
    if (await button.isVisible().catch(() => false)) {
      await Promise.all([page.waitForNavigation().catch(() => {}), button.click()]);
    } else {
      await page.waitForURL((u) => u.href.startsWith(url), { timeout: 1000 }).catch(() => {});
    }
  }
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

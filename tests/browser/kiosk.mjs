// The driver's side of the kiosk browser test (kiosk_test.cc starts the system and runs this):
// headless Chromium at the in-cab screen's 800x480 with touch, working the page as a driver
// would. Every step prints one line; the first failure prints what was expected and exits 1.
//
// Environment: KIOSK_URL (the page), KIOSK_SCREENSHOTS (a folder for the PNGs),
// KIOSK_RECIPIENT (the name to type; never printed), KIOSK_CHROMIUM (default /usr/bin/chromium).
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const url = process.env.KIOSK_URL;
const shots = process.env.KIOSK_SCREENSHOTS;
const recipient = process.env.KIOSK_RECIPIENT || 'Erika Mustermann';
const executablePath = process.env.KIOSK_CHROMIUM || '/usr/bin/chromium';
if (!url || !shots) {
  console.error('kiosk.mjs: set KIOSK_URL and KIOSK_SCREENSHOTS');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const WAIT_MS = 15000;
// A 1x1 PNG: the unit takes JPEG and PNG photos.
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGNgYGAAAAAEAAH2FzhVAAAAAElFTkSuQmCC',
  'base64');

function check(ok, what) {
  if (!ok) throw new Error('expected ' + what);
}

const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
const context = await browser.newContext({
  viewport: { width: 800, height: 480 },
  hasTouch: true,
  timezoneId: 'UTC',
  locale: 'en-GB',
});
const page = await context.newPage();
page.setDefaultTimeout(WAIT_MS);
const consoleLines = [];
page.on('console', (m) => consoleLines.push(m.text()));
page.on('pageerror', (e) => consoleLines.push('page error: ' + e.message));

async function shot(name) {
  await page.screenshot({ path: join(shots, name) });
  console.log('kiosk: screenshot ' + name);
}

async function messageOf(id) {
  return (await page.locator('#' + id).textContent()) || '';
}

// Strokes drawn with touch, through the DevTools protocol: the page sees pointerType "touch".
// The finger moves at a finger's pace and rests before it lifts: a fast lift is a fling to
// Chromium, and the tap after a fling only stops it, without a click, as on a real screen.
const cdp = await context.newCDPSession(page);
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function touchStroke(points) {
  const [first, ...rest] = points;
  await cdp.send('Input.dispatchTouchEvent',
                 { type: 'touchStart', touchPoints: [{ x: first[0], y: first[1] }] });
  for (const [x, y] of rest) {
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: [{ x, y }] });
    await pause(16);
  }
  await pause(150);
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
}

const steps = [
  ['the stop list shows the manifest in order with its windows', async () => {
    await page.goto(url);
    await page.locator('.stop').nth(2).waitFor();
    const rows = await page.locator('.stop').allTextContents();
    check(rows.length === 3, '3 stops, got ' + rows.length);
    check(rows[0].includes('Leopoldstraße 12') && rows[0].includes('08:00–09:30'),
          'stop 1 with its window 08:00–09:30, got "' + rows[0] + '"');
    check(rows[1].includes('Schwanthalerstraße 40') && rows[1].includes('09:30–11:00'),
          'stop 2 second, got "' + rows[1] + '"');
    check(rows[2].includes('Rosenheimer Platz 4'), 'stop 3 last, got "' + rows[2] + '"');
    check(rows.every((r) => r.includes('To do')), 'every stop "To do"');
  }],
  ['the header shows GNSS, the uplink, what waits and the last acknowledgement', async () => {
    await page.locator('#link', { hasText: 'Online' }).waitFor();
    await page.locator('#gnss', { hasText: 'GPS' }).waitFor();
    check((await messageOf('waiting')).startsWith('To send: '), 'the "To send" count');
    check((await messageOf('ack')).startsWith('Last sent: '), 'the last acknowledgement');
    await shot('stop-list.png');
  }],
  ['stop 1: Arrived is saved by the unit', async () => {
    await page.locator('.stop').nth(0).click();
    await page.locator('#stop-title', { hasText: 'Stop 1 of 3' }).waitFor();
    await page.locator('#do-arrived').tap();
    await page.locator('#stop-message', { hasText: 'Arrived — Saved on this unit (#' }).waitFor();
    await page.locator('#stop-badge', { hasText: 'Arrived' }).waitFor();
  }],
  ['Delivered: the page refuses to go on without a name, in plain words', async () => {
    await page.locator('#do-delivered').tap();
    await page.locator('#deliver-screen').waitFor();
    await page.locator('#to-review').tap();
    await page.locator('#edit-message', { hasText: 'Type the recipient\'s name first.' }).waitFor();
    check(await page.locator('#deliver-review').isHidden(), 'no review without a name');
  }],
  ['Delivered: name, a signature drawn by mouse and by touch, a photo', async () => {
    await page.locator('#recipient').fill(recipient);
    const box = await page.locator('#pad').boundingBox();
    // A mouse stroke: a wave across the box.
    const x0 = box.x + 30;
    const y0 = box.y + box.height * 0.55;
    await page.mouse.move(x0, y0);
    await page.mouse.down();
    for (let i = 1; i <= 36; i += 1) {
      await page.mouse.move(x0 + i * 11, y0 - Math.sin(i / 4) * box.height * 0.3);
    }
    await page.mouse.up();
    // A touch stroke: the underline.
    const line = [];
    for (let i = 0; i <= 36; i += 1) line.push([x0 + i * 10, box.y + box.height * 0.85]);
    await touchStroke(line);
    await page.locator('#photo').setInputFiles({ name: 'parcel.png', mimeType: 'image/png',
                                                 buffer: PNG });
    await page.locator('#photo-thumb').waitFor();
    await shot('signature.png');
  }],
  ['the review draws the signature back from its points, read-only', async () => {
    await page.locator('#to-review').tap();
    await page.locator('#deliver-review').waitFor();
    check(await page.locator('#review-name').textContent() === recipient,
          'the typed name in the review');
    const drawn = await page.locator('#review-pad').evaluate((c) => {
      const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let dark = 0;
      for (let i = 0; i < data.length; i += 4) if (data[i] < 128) dark += 1;
      return { dark, strokes: Number(c.dataset.strokes), points: Number(c.dataset.points) };
    });
    check(drawn.strokes === 2, '2 strokes (mouse and touch), got ' + drawn.strokes);
    check(drawn.points >= 20, 'at least 20 points, got ' + drawn.points);
    check(drawn.dark > 300, 'the strokes drawn on the review canvas, got ' + drawn.dark +
                            ' dark pixels');
  }],
  ['a refusal by the unit shows its reason, keeps the entries and says nothing is saved', async () => {
    await page.route('**/v1/proofs', (route) => route.fulfill({
      status: 507,
      contentType: 'application/json',
      body: JSON.stringify({ error: 'not stored: no space: the outbox is full' }),
    }));
    await page.locator('#save-proof').tap();
    await page.locator('#save-message', { hasText: 'Not saved: the unit\'s storage is full' })
        .waitFor();
    const text = await messageOf('save-message');
    check(text.includes('the outbox is full') && text.includes('try again'),
          'the unit\'s reason and "try again", got "' + text + '"');
    check(await page.locator('#save-proof').textContent() === 'Try again', 'a "Try again" button');
    check((await page.locator('body').innerText()).indexOf('Saved on this unit') < 0,
          'no "Saved" anywhere on screen');
    check(await page.locator('#review-name').textContent() === recipient &&
          await page.locator('#recipient').inputValue() === recipient, 'the name kept');
    await page.unroute('**/v1/proofs');
  }],
  ['Save again: "Saved on this unit" only after the unit answered', async () => {
    const save = page.locator('#save-proof');
    check(await save.textContent() === 'Try again', 'the retry button');
    await save.tap();
    await page.locator('#save-message', { hasText: /^Saved on this unit \(#\d+\)$/ }).waitFor();
    await shot('saved.png');
  }],
  ['after a reload stop 1 is marked delivered', async () => {
    await page.reload();
    await page.locator('.stop').nth(2).waitFor();
    const first = await page.locator('.stop').nth(0).textContent();
    check(first.includes('Delivered ✓'), 'stop 1 "Delivered ✓", got "' + first + '"');
    check((await messageOf('manifest-info')) === '1 of 3 done', '"1 of 3 done"');
  }],
  ['stop 2 failed: a reason is required, then it is saved', async () => {
    await page.locator('.stop').nth(1).click();
    await page.locator('#do-failed').tap();
    await page.locator('#save-failed').tap();
    await page.locator('#failed-message', { hasText: 'Choose why the delivery failed.' }).waitFor();
    await page.locator('.reason[data-reason=refused]').tap();
    await page.locator('#save-failed').tap();
    await page.locator('#failed-message', { hasText: /^Saved on this unit \(#\d+\)$/ }).waitFor();
    await shot('failed.png');
    await page.locator('#save-failed').tap();
    await page.locator('#stop-badge', { hasText: 'Failed: Refused' }).waitFor();
    await page.locator('#stop-screen .back').tap();
    const second = await page.locator('.stop').nth(1).textContent();
    check(second.includes('Failed: Refused'), 'stop 2 "Failed: Refused", got "' + second + '"');
  }],
  ['stop 3 partial: 2 items', async () => {
    await page.locator('.stop').nth(2).click();
    await page.locator('#do-partial').tap();
    await page.locator('#items-plus').tap();
    check(await page.locator('#items').inputValue() === '2', '2 items after +');
    await page.locator('#save-partial').tap();
    await page.locator('#partial-message', { hasText: /^Saved on this unit \(#\d+\)$/ }).waitFor();
    await page.locator('#save-partial').tap();
    await page.locator('#stop-badge', { hasText: 'Partial (2)' }).waitFor();
    await page.locator('#stop-screen .back').tap();
    check((await messageOf('manifest-info')) === '3 of 3 done', '"3 of 3 done"');
  }],
  ['a unit that stops answering is shown in the header', async () => {
    await page.route('**/v1/status', (route) => route.abort());
    await page.locator('#unreachable').waitFor();
    await page.locator('#link', { hasText: 'Device not reachable' }).waitFor();
    await shot('unreachable.png');
    await page.unroute('**/v1/status');
    await page.locator('#unreachable').waitFor({ state: 'hidden' });
  }],
  ['the name never reached the console', async () => {
    check(!consoleLines.some((l) => l.includes(recipient)),
          'no console line with the recipient\'s name');
    const errors = consoleLines.filter((l) => l.startsWith('page error'));
    check(errors.length === 0, 'no script error, got ' + errors.join(' | '));
  }],
];

let failed = false;
for (const [name, run] of steps) {
  try {
    await run();
    console.log('kiosk: ok: ' + name);
  } catch (e) {
    failed = true;
    console.log('kiosk: FAILED: ' + name + ': ' + String(e.message).split(recipient).join('<name>'));
    await page.screenshot({ path: join(shots, 'failure.png') }).catch(() => {});
    break;
  }
}
await browser.close();
if (failed) process.exit(1);
console.log('kiosk: all steps passed');

// End-to-end test of `ctcal-host serve` in Debian's headless Chromium, driven by playwright-core.
// Run by CTCal.Host.Tests.BrowserTests, which lays out the plugins folder, the exported tiny model and the real trainer
// (ctcal-train), starts the server on loopback and passes:
//   CTCAL_URL          the server's address (http://127.0.0.1:PORT/)
//   CTCAL_BASE         the diffusers folder exported as tiny-base and fine-tuned (assets/base-model)
//   CTCAL_DATA         a dataset folder
//   CTCAL_RUN          the fine-tune's output folder
//   CTCAL_FT_STEPS     the fine-tune's steps
//   CTCAL_FT_RESOLUTION  its training resolution
//   CTCAL_SCREENSHOTS  folder for one PNG per page (optional)
//   CTCAL_CHROMIUM     the browser (default /usr/bin/chromium)
// Exits 0 when every step passed; otherwise prints the failing step and exits 1. Prints the loss curve's points as
// "page losses: [[step, loss], ...]" for BrowserTests to compare with the trainer's log.
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = name => { const v = process.env[name]; if (!v) throw new Error(`${name} is not set`); return v; };
const url = env('CTCAL_URL');
const shots = process.env.CTCAL_SCREENSHOTS;
if (shots) mkdirSync(shots, { recursive: true });
const timeout = 300_000; // a hang guard only; nothing here is timed (the fine-tune is a real one on a loaded machine)
const ftSteps = Number(env('CTCAL_FT_STEPS'));

const userDataDir = mkdtempSync(join(tmpdir(), 'ctcal-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CTCAL_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
context.setDefaultTimeout(timeout);
const page = context.pages()[0] || await context.newPage();
const consoleErrors = [];
page.on('pageerror', e => consoleErrors.push(String(e)));

let step = '';
const check = (ok, what) => { if (!ok) throw new Error(what); };
const shot = async name => { if (shots) await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true }); };
const go = async hash => { await page.goto(url + hash); await page.waitForLoadState('domcontentloaded'); };

async function generate(model, { steps = 4, seed = 1, count = 1, width = '', height = '' } = {}) {
  await go('#generate');
  const form = page.locator('#generate-form');
  await form.locator('select[name=model]').selectOption(model);
  await form.locator('[name=width]').fill(String(width));
  await form.locator('[name=height]').fill(String(height));
  await form.locator('[name=steps]').fill(String(steps));
  await form.locator('[name=seed]').fill(String(seed));
  await form.locator('[name=count]').fill(String(count));
  await form.locator('select[name=scheduler]').selectOption('euler_a');
  await page.getByTestId('generate').click();
}

try {
  step = 'the models page lists the exported tiny model';
  await go('#models');
  await page.locator('#models-body tr[data-model="tiny-base"]').waitFor();
  const row = await page.locator('#models-body tr[data-model="tiny-base"]').innerText();
  check(row.includes('sd1') && row.includes('base') && row.includes('64x64'), `tiny-base row shows family and method: ${row}`);
  await shot('models');

  step = 'a generation from the exported model shows per-step progress and its image';
  await generate('tiny-base', { steps: 20, seed: 7 });
  await page.locator('#generate-results figure').first().waitFor();
  await page.locator('#generate-job .status', { hasText: 'done' }).waitFor();
  const caption = await page.locator('#generate-results figure figcaption').first().innerText();
  check(caption.includes('seed 7') && caption.includes('20 steps'), `caption names seed and steps: ${caption}`);
  await shot('generate');

  step = 'invalid input is refused with the field named';
  await page.locator('#generate-form [name=steps]').fill('0');
  await page.getByTestId('generate').click();
  await page.getByTestId('generate-error').filter({ hasText: 'Steps must be' }).waitFor();
  check(await page.locator('#generate-form [name=steps].invalid').count() === 1, 'the steps field is marked');

  step = 'a long generation can be cancelled';
  await generate('tiny-base', { steps: 1000, count: 16, width: 64, height: 64 });
  await page.locator('#generate-job .status', { hasText: 'step' }).waitFor();
  await page.getByTestId('cancel-generate').click();
  await page.locator('#generate-job .status', { hasText: 'cancelled' }).waitFor();

  step = 'the gallery shows the generated image with its parameters';
  await go('#gallery');
  await page.locator('#gallery figure').first().waitFor();
  const file = await page.locator('#gallery figure').first().getAttribute('data-file');
  const text = await page.evaluate(async f => {
    // The PNG's "parameters" tEXt chunk, read back in the page as another tool would read it.
    const bytes = new Uint8Array(await (await fetch('/gallery/' + f)).arrayBuffer());
    const latin1 = new TextDecoder('latin1').decode(bytes);
    const at = latin1.indexOf('tEXtparameters\0');
    return at < 0 ? '' : latin1.slice(at + 15, at + 15 + 300);
  }, file);
  check(text.includes('Steps: 20, Sampler: euler_a') && text.includes('Seed: 7') && text.includes('Model: tiny-base'), `parameters chunk: ${text}`);

  step = 'a short fine-tune reports its steps and loss and reaches done';
  await go('#finetune');
  const ft = page.locator('#finetune-form');
  await ft.locator('[name=baseModel]').fill(env('CTCAL_BASE'));
  await ft.locator('[name=data]').fill(env('CTCAL_DATA'));
  await ft.locator('[name=output]').fill(env('CTCAL_RUN'));
  await ft.locator('select[name=method]').selectOption('ctcal');
  await ft.locator('[name=steps]').fill(String(ftSteps));
  await ft.locator('[name=loraRank]').fill('4');
  await ft.locator('[name=resolution]').fill(env('CTCAL_FT_RESOLUTION'));
  await ft.locator('[name=modelId]').fill('tiny-ctcal');
  // Every text the status line shows is recorded as it is set: a fine-tune of a few steps can go from its first step to
  // done between two of Playwright's polls, so waiting for a step's text to be visible would race with the fine-tune.
  await page.evaluate(() => {
    window.finetuneStatuses = [];
    const status = document.querySelector('[data-testid=finetune-status]');
    new MutationObserver(records => {
      for (const r of records) {
        for (const n of r.addedNodes) window.finetuneStatuses.push(n.textContent);
        if (r.type === 'characterData') window.finetuneStatuses.push(r.target.textContent);
      }
    }).observe(status, { childList: true, characterData: true, subtree: true });
  });
  await page.getByTestId('start-finetune').click();
  await page.getByTestId('finetune-status').filter({ hasText: 'done' }).waitFor();
  const statuses = await page.evaluate(() => window.finetuneStatuses);
  const stepStatus = new RegExp(`step \\d+/${ftSteps} · loss `);
  check(statuses.some(t => stepStatus.test(t)), `the status showed a step with its loss before done: ${JSON.stringify(statuses)}`);
  check(await page.locator('#loss-curve polyline').count() === 1, 'the loss curve is drawn');
  const points = (await page.locator('#loss-curve circle title').allTextContents())
    .map(t => /^step (\d+): loss (\S+)$/.exec(t)).map(m => m && [Number(m[1]), Number(m[2])]);
  check(points.length === ftSteps && points.every((p, i) => p && p[0] === i + 1 && Number.isFinite(p[1])), `one loss point per step: ${JSON.stringify(points)}`);
  console.log(`page losses: ${JSON.stringify(points)}`);
  await page.locator('#finetunes-body tr', { hasText: 'done' }).waitFor();
  await shot('finetune');

  step = 'the finished fine-tune exports with one click';
  await go('#export');
  const exportButton = page.locator('#export-finetunes-body button', { hasText: 'Export' }).first();
  await exportButton.waitFor();
  const idInput = page.locator('#export-finetunes-body input').first();
  await idInput.fill('tiny-ctcal-export');
  await exportButton.click();
  await page.getByTestId('export-status').filter({ hasText: 'exported tiny-ctcal-export' }).waitFor();
  await shot('export');

  step = 'the exported fine-tune is listed with its method and generates';
  await go('#models');
  const tuned = await page.locator('#models-body tr[data-model="tiny-ctcal-export"]').innerText();
  check(tuned.includes('ctcal'), `exported fine-tune row shows method ctcal: ${tuned}`);
  check(tuned.includes('LoRA ') && tuned.includes('pytorch_lora_weights.safetensors'), `exported fine-tune row names the trainer's LoRA: ${tuned}`);
  await generate('tiny-ctcal-export', { steps: 20, seed: 3 });
  await page.locator('#generate-results figure', { hasText: 'tiny-ctcal-export' }).waitFor();

  step = 'compare runs two models on the same prompt and seeds side by side';
  await go('#compare');
  const cmp = page.locator('#compare-form');
  await cmp.locator('select[name=modelA]').selectOption('tiny-base');
  await cmp.locator('select[name=modelB]').selectOption('tiny-ctcal-export');
  await cmp.locator('[name=steps]').fill('20');
  await cmp.locator('[name=count]').fill('3');
  await cmp.locator('select[name=scheduler]').selectOption('euler_a');
  await page.getByTestId('compare').click();
  await page.locator('#compare-a figure').nth(2).waitFor();
  await page.locator('#compare-b figure').nth(2).waitFor();
  const seedsA = await page.locator('#compare-a figcaption').allInnerTexts();
  const seedsB = await page.locator('#compare-b figcaption').allInnerTexts();
  check(seedsA.filter(t => t.includes('seed 1 ')).length === 1 && seedsB.filter(t => t.includes('seed 1 ')).length === 1, 'both sides have seed 1');
  await shot('compare');

  step = 'the gallery lists every image, newest first';
  await go('#gallery');
  await page.locator('#gallery figure').nth(7).waitFor();
  await shot('gallery');

  check(consoleErrors.length === 0, `no script errors in the page: ${consoleErrors.join('; ')}`);
  console.log('browser test passed: models, generate, validation, cancel, gallery, fine-tune, export, compare');
} catch (error) {
  console.error(`FAILED at "${step}": ${error.message}`);
  if (shots) await page.screenshot({ path: join(shots, 'failure.png'), fullPage: true }).catch(() => {});
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}

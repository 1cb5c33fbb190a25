/**
 * Integration: the operator's command line against a real `npm start` process: publish, score an
 * assessment, show a user's state and device views, tail the audit, send a signed test webhook.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { waitFor } from '../support/processes.ts';
import { PRICE_PREMIUM, PRICE_TIERS, stripeEvent, subscription } from '../support/stripe.ts';
import { useSystem } from '../support/system.ts';

const SECRET = 'whsec_cli_test';
const system = useSystem(
  { STRIPE_WEBHOOK_SECRET: SECRET, STRIPE_PRICE_TIERS: `${Object.keys(PRICE_TIERS)[1]}=premium`, PORT: '0' },
  { script: 'scripts/start.ts' },
);

async function cli(...args: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout } = await promisify(execFile)(process.execPath, ['scripts/cli.ts', ...args], {
      env: { ...process.env, NATS_URL: system().nats.url, PORT: String(system().runtime.httpPort) },
    });
    return { code: 0, out: stdout };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout + e.stderr };
  }
}

describe('fullmind-sync CLI', () => {
  it('publishes, shows state and device views, tails the audit, and sends a signed webhook', async () => {
    const user = 'cli-user';
    expect((await cli('publish', 'device_registered', '--user', user, '--deviceId', 'phone', '--platform', 'web')).code).toBe(0);
    const refused = await cli('assessment', '--user', user, '--instrument', 'phq9', '--answers', '1,1,1');
    expect(refused).toMatchObject({ code: 1 });
    expect(refused.out).toContain('refused (invalid, answers)');

    const body = join(tmpdir(), `stripe-${process.pid}.json`);
    writeFileSync(body, JSON.stringify(stripeEvent('customer.subscription.created', subscription('active', [PRICE_PREMIUM], { metadata: { user_id: user } }), Math.floor(Date.now() / 1000))));
    const webhook = await cli('webhook', body, '--secret', SECRET);
    expect(webhook.code).toBe(0);
    expect(webhook.out).toContain('"published":"subscription_updated"');

    const scored = await cli('assessment', '--user', user, '--instrument', 'phq9', '--answers', '1,1,0,0,0,0,0,0,1');
    expect(scored.out).toContain('total 3 (minimal), crisis signalled on the crisis lane');
    const state = await waitFor(async () => {
      const s = await cli('state', user);
      return s.out.includes('crisis=true') ? s : undefined;
    }, 'the crisis in the state');
    expect(state.out).toContain('"subscription": "premium"');
    expect(state.out).toContain('"nodeId": "node-1"');
    expect(state.out).toMatch(/view: v\d+ devices=phone premium\/active crisis=true/);

    const audit = await cli('audit', user);
    const lines = audit.out.trim().split('\n');
    // The assessment (normal lane) and its crisis signal (crisis lane) race: either starts the crisis.
    expect(lines).toHaveLength(2);
    expect(lines[0]!.split(/\s+/)[1]).toBe('subscription_updated');
    expect(['assessment_completed', 'crisis_detected']).toContain(lines[1]!.split(/\s+/)[1]);
    expect(lines[1]).toContain('premium/stable → premium/active (high)');
  });
});

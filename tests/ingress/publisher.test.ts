/**
 * Integration (real nats-server, runtime and device processes): the publisher client other services
 * use. Invalid events never leave it; a flagged assessment reaches the crisis lane and every device.
 */
import { describe, expect, it } from 'vitest';
import { PublishError, FullmindPublisher } from '../../clients/publisher.ts';
import { connectNats, drainNats } from '../../transport/connection.ts';
import { CRISIS_FEATURES } from '../support/events.ts';
import { useSystem } from '../support/system.ts';

const system = useSystem();

describe('publisher client', () => {
  it('refuses an invalid assessment before it is sent, naming the item', async () => {
    const { client } = system();
    const publisher = new FullmindPublisher(client.nc);
    const before = (await client.jsm.streams.info(client.topology.streams.normal)).state.messages;
    const err = await publisher
      .assessmentCompleted({ userId: 'pub-user', instrument: 'phq9', answers: [0, 0, 0, 0, 0, 0, 0, 0, 4] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PublishError);
    expect(err).toMatchObject({ code: 'invalid', field: 'answers.8', retryable: false });
    const missing = await publisher.assessmentCompleted({ userId: 'pub-user', instrument: 'gad7', answers: [1, 1, 1] }).catch((e: unknown) => e);
    expect(missing).toMatchObject({ code: 'invalid', field: 'answers' });
    const badUser = await publisher.crisisButton({ userId: 'a.b' }).catch((e: unknown) => e);
    expect(badUser).toMatchObject({ code: 'invalid', field: 'userId' });
    expect((await client.jsm.streams.info(client.topology.streams.normal)).state.messages).toBe(before);
    expect((await client.jsm.streams.info(client.topology.streams.crisis)).state.messages).toBe(0);
  });

  it('PHQ-9 with item 9 = 1 and a total of 3 puts the user in crisis on every device, through the crisis lane', async () => {
    const { client } = system();
    const publisher = new FullmindPublisher(client.nc, { maxInFlight: 2 });
    const userId = 'phq-user';
    const devices = await system().devices(`${userId}:phone`, `${userId}:tablet`, `${userId}:web`);
    await Promise.all(['phone', 'tablet', 'web'].map((deviceId) => publisher.registerDevice({ userId, deviceId, platform: 'ios' })));
    const score = await publisher.assessmentCompleted({ userId, instrument: 'phq9', answers: [1, 1, 0, 0, 0, 0, 0, 0, 1] });
    expect(score).toMatchObject({ total: 3, band: 'minimal', selfHarmFlag: true, crisis: true });
    for (const d of ['phone', 'tablet', 'web']) {
      const v = await devices.waitForView(`${userId}:${d}`, (x) => x.crisis, 'crisis view');
      expect(v.features).toEqual(expect.arrayContaining(CRISIS_FEATURES));
      expect(v.crisisLevel).toBe('high');
    }
    const crisisLane = await client.jsm.streams.info(client.topology.streams.crisis);
    expect(crisisLane.state.messages).toBe(1);
    const audit = (await client.audit()).filter((a) => a.userId === userId && a.to.crisis === 'active' && a.from.crisis === 'stable');
    expect(audit).toHaveLength(1);
  });

  it('signed in as the assessment service, it publishes assessments and their crises, and is refused another service’s kind', async () => {
    const { client } = system();
    const nc = await connectNats({ servers: system().nats.url, name: 'test/assessments', credentials: { role: 'assessments' } });
    try {
      const publisher = new FullmindPublisher(nc);
      const userId = 'role-pub-user';
      const before = (await client.jsm.streams.info(client.topology.streams.crisis)).state.messages;
      await expect(publisher.assessmentCompleted({ userId, instrument: 'phq9', answers: [1, 1, 0, 0, 0, 0, 0, 0, 1] })).resolves.toMatchObject({ crisis: true });
      expect((await client.jsm.streams.info(client.topology.streams.crisis)).state.messages).toBe(before + 1);
      const err = await publisher.registerDevice({ userId, deviceId: 'phone', platform: 'ios' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PublishError);
      expect(err).toMatchObject({ code: 'forbidden', retryable: false });
    } finally {
      await drainNats(nc);
    }
  });
});

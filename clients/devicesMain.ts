/**
 * A device process hosting one or more device actors: `node clients/devicesMain.ts user:device …`.
 * Prints one JSON line per applied view (what the device now shows: version and every entitlement:
 * tier, status, trial and grace deadlines, crisis, features, sync policy; a digest of the safety content),
 * so operators and tests can watch what devices applied; also a line per catch-up (start, reconnect)
 * and when a device learns it was removed. Stops cleanly on SIGINT/SIGTERM.
 */
import { createHash } from 'node:crypto';
import { deploymentFromEnv } from '../actors/config.ts';
import { stopOnSignals } from '../actors/shutdown.ts';
import { connectNats, drainNats } from '../transport/connection.ts';
import { createTopology } from '../transport/topology.ts';
import { DeviceActor } from './deviceActor.ts';

const pairs = process.argv.slice(2).map((arg) => {
  const [userId, deviceId] = arg.split(':');
  if (!userId || !deviceId) throw new Error(`expected user:device, got "${arg}"`);
  return { userId, deviceId };
});
const deployment = deploymentFromEnv();
const nc = await connectNats({ servers: deployment.natsUrl, name: `devices/${process.pid}`, credentials: { role: 'runtime' } });
const topology = createTopology(deployment.topology);
const actors = await Promise.all(
  pairs.map(({ userId, deviceId }) =>
    DeviceActor.start({
      nc,
      topology,
      userId,
      deviceId,
      onApply: (v) =>
        console.log(
          JSON.stringify({
            applied: true,
            userId: v.userId,
            deviceId,
            version: v.version,
            tier: v.tier,
            status: v.status,
            crisis: v.crisis.active,
            crisisLevel: v.crisis.level,
            features: v.features.enabled,
            priority: v.sync.priority,
            // The rest of the entitlements, so a test can compare the whole view a device applied.
            trialEndsAt: v.trialEndsAt,
            gracePeriod: v.gracePeriod,
            crisisSince: v.crisis.since,
            presentation: v.crisis.presentation,
            disabledFeatures: v.features.disabled,
            sync: v.sync,
            safetyPlan: v.safety.plan !== null,
            // A digest, not the text: this output is a log of what the device applied.
            safetyDigest: createHash('sha256').update(JSON.stringify(v.safety)).digest('hex').slice(0, 16),
            contacts: v.safety.contacts.length,
            issuedAt: v.issuedAt,
            appliedAt: Date.now(),
          }),
        ),
      onReject: (err) => console.log(JSON.stringify({ rejected: true, error: err.message })),
      onRemoved: () => console.log(JSON.stringify({ removed: true, userId, deviceId })),
      onCatchUp: (v) => console.log(JSON.stringify({ caughtUp: true, userId, deviceId, version: v?.version ?? null, at: Date.now() })),
    }),
  ),
);
console.log(JSON.stringify({ ready: true, devices: actors.length }));
stopOnSignals(async () => {
  await Promise.all(actors.map((a) => a.stop()));
  await drainNats(nc);
});

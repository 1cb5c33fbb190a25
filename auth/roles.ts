/**
 * Who may do what in NATS: each role's publish and subscribe allow-lists, and the accounts file
 * nats.conf includes (`nats-accounts.conf`, rendered from here by `npm run schemas`). Pure: the
 * lists follow from the topology's subjects and names, so they cannot drift from what the code uses.
 *
 * Accounts: `APP` holds the data (JetStream) and the roles that work on it (runtime, ingress,
 * viewer, callout); `SERVICES` holds the services that only publish events, and sees nothing of
 * `APP` but the subjects of their event kinds; `DEVICES` holds the phones, which the auth callout
 * admits one by one (`auth/devicePermissions.ts`) and which see nothing of `APP` but three imports:
 * the views, the last-view direct get and the crisis button; `SYS` is the system account, whose
 * kick service only the callout may use.
 */
import type { UserEventType } from '../machines/events.ts';
import { inboxPrefix, ROLES, type Role } from '../transport/credentials.ts';
import { AUTH_CALLOUT_SUBJECT, kickSubject } from '../transport/subjects.ts';
import type { Topology } from '../transport/topology.ts';
import { DEVICES_ACCOUNT } from './devicePermissions.ts';
import { roleKeyVariable } from './secrets.ts';

/** The event kinds each service may publish: its own and no other (the ingress is the Stripe service). */
export const SERVICE_EVENT_KINDS = {
  ingress: ['subscription_updated', 'subscription_activated', 'plan_changed', 'subscription_canceled', 'payment_failed', 'payment_recovered'],
  payments: ['subscription_updated', 'subscription_activated', 'plan_changed', 'subscription_canceled', 'payment_failed', 'payment_recovered'],
  assessments: ['assessment_completed', 'crisis_detected'],
  care: ['safety_plan_updated', 'emergency_contacts_updated', 'crisis_detected', 'crisis_resolved'],
  accounts: ['device_registered', 'device_removed', 'customer_linked'],
} as const satisfies Partial<Record<Role, readonly UserEventType[]>>;

/** The account each role signs in to: the services that only publish events are kept out of the data's. */
export const ROLE_ACCOUNTS: Readonly<Record<Role, 'APP' | 'SERVICES'>> = {
  runtime: 'APP',
  ingress: 'APP',
  viewer: 'APP',
  callout: 'APP',
  payments: 'SERVICES',
  assessments: 'SERVICES',
  care: 'SERVICES',
  accounts: 'SERVICES',
};

/** What one role may publish and subscribe to (nats.conf `permissions`). */
export interface RolePermissions {
  publish: string[];
  subscribe: string[];
  /** Subjects denied for both, within what is allowed. */
  deny?: string[];
  /** Whether it may reply to requests it received (a service's replies go to the requester's inbox). */
  allowResponses: boolean;
}


/** The JetStream API subjects that read one stream: info, message gets and ordered (ephemeral) consumers. */
function readStream(stream: string): string[] {
  return [
    `$JS.API.STREAM.INFO.${stream}`,
    `$JS.API.STREAM.MSG.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}.>`,
    `$JS.API.CONSUMER.CREATE.${stream}`,
    `$JS.API.CONSUMER.CREATE.${stream}.>`,
    `$JS.API.CONSUMER.INFO.${stream}.*`,
    `$JS.API.CONSUMER.DELETE.${stream}.*`,
    `$JS.API.CONSUMER.MSG.NEXT.${stream}.*`,
    `$JS.FC.${stream}.>`,
  ];
}

const kvStream = (bucket: string) => `KV_${bucket}`;

/** Each role's permissions in a topology. */
export function rolePermissions(t: Topology): Record<Role, RolePermissions> {
  const s = t.subjects;
  const publishes = (kinds: readonly UserEventType[]) => kinds.map((k) => s.event('*', k));
  const inbox = (role: Role) => `${inboxPrefix({ role })}.>`;
  const service = (role: keyof typeof SERVICE_EVENT_KINDS): RolePermissions => ({
    publish: publishes(SERVICE_EVENT_KINDS[role]),
    subscribe: [inbox(role)],
    allowResponses: false,
  });
  const links = t.consumers.customerLinks;
  return {
    // The runtime owns the data and provisions it: everything in APP but the system's requests
    // (the auth callout's subject and the kick service).
    runtime: {
      publish: ['>'],
      subscribe: ['>'],
      deny: ['$SYS.>'],
      allowResponses: true,
    },
    ingress: {
      publish: [
        ...publishes(SERVICE_EVENT_KINDS.ingress),
        s.deadLetter('*'),
        '$JS.API.INFO',
        '$JS.API.STREAM.INFO.*',
        `$JS.API.CONSUMER.INFO.${t.streams.normal}.${links}`,
        `$JS.API.CONSUMER.MSG.NEXT.${t.streams.normal}.${links}`,
        `$JS.ACK.${t.streams.normal}.${links}.>`,
        ...readStream(kvStream(t.buckets.customers)),
        `$KV.${t.buckets.customers}.>`,
      ],
      subscribe: [inbox('ingress')],
      allowResponses: false,
    },
    viewer: {
      publish: ['$JS.API.INFO', ...[t.streams.views, t.streams.audit, kvStream(t.buckets.users), kvStream(t.buckets.partitions)].flatMap(readStream)],
      subscribe: [inbox('viewer')],
      allowResponses: false,
    },
    callout: {
      publish: [`$JS.API.DIRECT.GET.${t.streams.views}.>`, `$JS.API.DIRECT.GET.${kvStream(t.buckets.deviceTokens)}.>`, `$KV.${t.buckets.deviceTokens}.>`, kickSubject('*')],
      subscribe: [AUTH_CALLOUT_SUBJECT, s.deviceRevocation('*'), inbox('callout')],
      allowResponses: true,
    },
    payments: service('payments'),
    assessments: service('assessments'),
    care: service('care'),
    accounts: service('accounts'),
  };
}

/** The accounts file nats.conf includes: the accounts, each role's user and the auth callout. */
export function renderAccountsConf(t: Topology): string {
  const list = (xs: readonly string[]) => `[${xs.map((x) => JSON.stringify(x)).join(', ')}]`;
  const permissions = rolePermissions(t);
  const usersOf = (account: 'APP' | 'SERVICES') =>
    ROLES.filter((role) => ROLE_ACCOUNTS[role] === account)
      .map((role) => {
        const p = permissions[role];
        const deny = p.deny ? `, deny: ${list(p.deny)}` : '';
        const responses = p.allowResponses ? ', allow_responses: true' : '';
        return `      # ${role}\n      { nkey: $${roleKeyVariable(role)}, permissions: { publish: { allow: ${list(p.publish)}${deny} }, subscribe: { allow: ${list(p.subscribe)}${deny} }${responses} } }`;
      })
      .join('\n');
  const q = JSON.stringify;
  const views = t.subjects.all.views;
  const directGet = `$JS.API.DIRECT.GET.${t.streams.views}.>`;
  const crisisButton = t.subjects.event('*', 'crisis_button');
  const serviceEvents = [
    ...new Set(ROLES.filter((role) => ROLE_ACCOUNTS[role] === 'SERVICES').flatMap((role) => permissions[role].publish)),
  ];
  const kick = kickSubject('*');
  return `# Generated by \`npm run schemas\` from auth/roles.ts: edit that file, not this one.
# Accounts and per-role users of fullmind-sync (README "Security model"). Each $FM_… variable is set
# from the secrets directory by the process that starts the server (auth/secrets.ts serverEnv).

accounts {
  APP {
    jetstream: enabled
    users: [
${usersOf('APP')}
    ]
    exports: [
      { stream: ${q(views)}, accounts: [${DEVICES_ACCOUNT}] }
      { service: ${q(directGet)}, accounts: [${DEVICES_ACCOUNT}] }
      { service: ${q(crisisButton)}, accounts: [${DEVICES_ACCOUNT}] }
${serviceEvents.map((subject) => `      { service: ${q(subject)}, accounts: [SERVICES] }`).join('\n')}
    ]
    imports: [
      { service: { account: SYS, subject: ${q(kick)} } }
    ]
  }
  SERVICES {
    # Publishers only: each user's allow-list names its own event kinds; the lanes' JetStream acks
    # come back through the imports.
    users: [
${usersOf('SERVICES')}
    ]
    imports: [
${serviceEvents.map((subject) => `      { service: { account: APP, subject: ${q(subject)} } }`).join('\n')}
    ]
  }
  ${DEVICES_ACCOUNT} {
    # No users: the auth callout admits each device here with permissions for its own user only.
    imports: [
      { stream: { account: APP, subject: ${q(views)} } }
      { service: { account: APP, subject: ${q(directGet)} } }
      { service: { account: APP, subject: ${q(crisisButton)} } }
    ]
  }
  SYS {
    exports: [ { service: ${q(kick)}, accounts: [APP] } ]
  }
}
system_account: SYS

authorization {
  auth_callout {
    # Device users are signed by this account key (the callout's issuer); every client that is not
    # one of the role users below is sent to the callout service.
    issuer: $FM_CALLOUT_ISSUER
    account: APP
    auth_users: [ ${ROLES.map((r) => `$${roleKeyVariable(r)}`).join(', ')} ]
  }
}
`;
}

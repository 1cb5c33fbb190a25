/**
 * The nemesis run's network, made with iproute2 only (root): each nats-server in a network
 * namespace of its own with two links,
 * - a client link: a veth pair to the root namespace (root `fmn-c<i>` 10.231.<i>.1, server `c0`
 *   10.231.<i>.2), where the runtime nodes, devices and the run itself connect;
 * - a route link: a veth pair whose root end is a port of the bridge `fmn-br`, shared by the servers
 *   (server `r0` 10.232.0.<i>): the cluster's routes.
 * A partition takes both of one server's links down inside its namespace, its route and its
 * client ports: it is cut off from the other two, and its clients (nodes, devices) from it, until
 * they move to another server; healing brings both up again. (A server cut off from its peers while
 * its clients stay connected to it is not made here: see the README's guarantees.)
 * Everything is named `fmn-…`; {@link removeStaleNetwork} removes what an aborted run left.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/** Every namespace and root link of the run starts with it. */
export const NET_PREFIX = 'fmn-';
const BRIDGE = `${NET_PREFIX}br`;
/** The route link's name inside a server's namespace. */
const ROUTE_LINK = 'r0';
const CLIENT_LINK = 'c0';

/** One server's place in the network. */
export interface ServerNet {
  /** 1-based. */
  index: number;
  netns: string;
  /** Where clients reach the server (its certificate must name it). */
  clientIp: string;
  /** Where the other servers reach its routes. */
  routeIp: string;
}

/** The network of `count` servers, by the plan in the module comment (nothing is made). */
export function networkPlan(count: number): ServerNet[] {
  return Array.from({ length: count }, (_, i) => ({
    index: i + 1,
    netns: `${NET_PREFIX}s${i + 1}`,
    clientIp: `10.231.${i + 1}.2`,
    routeIp: `10.232.0.${i + 1}`,
  }));
}

async function ip(...args: string[]): Promise<string> {
  return (await exec('ip', args)).stdout;
}

/** Runs `ip` and ignores a failure (cleaning up what may not exist). */
async function ipQuietly(...args: string[]): Promise<void> {
  await ip(...args).catch(() => undefined);
}

/** The run's namespaces that exist now. */
async function namespaces(): Promise<string[]> {
  const out = await ip('netns', 'list').catch(() => '');
  return out
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(NET_PREFIX));
}

/** Process ids inside one of the run's namespaces (servers an aborted run left running). */
export async function processesIn(netns: string): Promise<number[]> {
  const out = await ip('netns', 'pids', netns).catch(() => '');
  return out
    .split('\n')
    .map((l) => Number(l.trim()))
    .filter((pid) => Number.isInteger(pid) && pid > 0);
}

/** The run's links in the root namespace that exist now (the bridge, the root ends of the veth pairs). */
async function rootLinks(): Promise<string[]> {
  return (await ip('-o', 'link', 'show').catch(() => ''))
    .split('\n')
    .map((l) => /^\d+:\s+([^:@]+)/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined && n.startsWith(NET_PREFIX));
}

/**
 * Removes what an earlier run left: kills (-9) the processes inside its namespaces (its servers,
 * which only it starts there), then deletes the namespaces and the root links. Returns what it found.
 */
export async function removeStaleNetwork(): Promise<{ namespaces: string[]; killed: number[]; links: string[] }> {
  const stale = await namespaces();
  const killed: number[] = [];
  for (const ns of stale) {
    for (const pid of await processesIn(ns)) {
      try {
        process.kill(pid, 'SIGCONT');
        process.kill(pid, 'SIGKILL');
        killed.push(pid);
      } catch {
        // Gone already.
      }
    }
  }
  const links = await rootLinks();
  await removeNetwork();
  return { namespaces: stale, killed, links };
}

/** Makes the network of {@link networkPlan}; throws (after removing what it made) when `ip` refuses. */
export async function createNetwork(count: number): Promise<ServerNet[]> {
  const plan = networkPlan(count);
  try {
    await ip('link', 'add', BRIDGE, 'type', 'bridge');
    await ip('link', 'set', BRIDGE, 'up');
    for (const s of plan) {
      const clientRoot = `${NET_PREFIX}c${s.index}`;
      const routeRoot = `${NET_PREFIX}r${s.index}`;
      await ip('netns', 'add', s.netns);
      await ip('-n', s.netns, 'link', 'set', 'lo', 'up');
      await ip('link', 'add', clientRoot, 'type', 'veth', 'peer', 'name', CLIENT_LINK, 'netns', s.netns);
      await ip('addr', 'add', `10.231.${s.index}.1/24`, 'dev', clientRoot);
      await ip('link', 'set', clientRoot, 'up');
      await ip('-n', s.netns, 'addr', 'add', `${s.clientIp}/24`, 'dev', CLIENT_LINK);
      await ip('-n', s.netns, 'link', 'set', CLIENT_LINK, 'up');
      await ip('link', 'add', routeRoot, 'type', 'veth', 'peer', 'name', ROUTE_LINK, 'netns', s.netns);
      await ip('link', 'set', routeRoot, 'master', BRIDGE);
      await ip('link', 'set', routeRoot, 'up');
      await ip('-n', s.netns, 'addr', 'add', `${s.routeIp}/24`, 'dev', ROUTE_LINK);
      await ip('-n', s.netns, 'link', 'set', ROUTE_LINK, 'up');
    }
  } catch (err) {
    await removeNetwork();
    throw new Error(`could not make the network namespaces (root and iproute2 needed): ${(err as Error).message}`, { cause: err });
  }
  return plan;
}

/** Cuts a server off from the others and from its clients: both its links go down inside its namespace. */
export async function cut(server: ServerNet): Promise<void> {
  for (const link of [ROUTE_LINK, CLIENT_LINK]) await ip('-n', server.netns, 'link', 'set', link, 'down');
}

/** Heals {@link cut}: both links come up again (idempotent). */
export async function heal(server: ServerNet): Promise<void> {
  for (const link of [ROUTE_LINK, CLIENT_LINK]) await ip('-n', server.netns, 'link', 'set', link, 'up');
}

/** Removes the run's namespaces and root links (deleting a namespace deletes its veth pairs too). */
export async function removeNetwork(): Promise<void> {
  for (const ns of await namespaces()) await ipQuietly('netns', 'del', ns);
  for (const link of await rootLinks()) await ipQuietly('link', 'del', link);
}

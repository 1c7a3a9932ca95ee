import dns from 'node:dns';
import net from 'node:net';
import ipaddr from 'ipaddr.js';

/** IPv6 global unicast (RFC 4291): every other IPv6 block is local, special-purpose or unassigned. */
const GLOBAL_UNICAST_V6 = ipaddr.parseCIDR('2000::/3');

/**
 * Whether a literal IP address is one a webhook must not reach. Only global
 * unicast passes, IPv4 and IPv6 alike, as ipaddr.js classifies it (its range
 * table follows the IANA special-purpose registries). An IPv4-mapped IPv6
 * address (`::ffff:a.b.c.d`, which a dual-stack socket connects to as IPv4) is
 * judged as its IPv4 address. Every other form that embeds or translates an
 * IPv4 address (IPv4-compatible `::a.b.c.d`, SIIT `::ffff:0:a.b.c.d`, NAT64
 * `64:ff9b::/96`, 6to4 `2002::/16`, Teredo `2001::/32`) is refused whatever it
 * embeds: a webhook never needs one, and each can lead to a private host.
 */
export function isPrivateAddress(address: string): boolean {
  const family = net.isIP(address);
  if (family === 0) return true;
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    // ipaddr.js reads `::a.b.c.d` as `::ffff:a.b.c.d`; the URL parser's all-hex form keeps them apart.
    parsed = ipaddr.parse(family === 6 ? new URL(`http://[${address}]/`).hostname.slice(1, -1) : address);
  } catch {
    return true;
  }
  if (parsed.kind() === 'ipv6') {
    const v6 = parsed as ipaddr.IPv6;
    if (v6.isIPv4MappedAddress()) parsed = v6.toIPv4Address();
    else if (!v6.match(GLOBAL_UNICAST_V6)) return true;
  }
  return parsed.range() !== 'unicast';
}

/**
 * A `lookup` for http.request that refuses private addresses. The check runs
 * on the very addresses the connection uses, so a DNS answer that changes
 * between the check and the request (rebinding) cannot slip through.
 */
export const guardedLookup: net.LookupFunction = (hostname, options, callback) => {
  dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, '', 0);
    const list = addresses as dns.LookupAddress[];
    const bad = list.find((a) => isPrivateAddress(a.address));
    if (bad || list.length === 0) {
      const refusal = Object.assign(new Error(`${hostname} resolves to a private address`), { code: 'EPRIVATEADDRESS' });
      return callback(refusal, '', 0);
    }
    if ((options as dns.LookupOptions).all) return (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, list);
    callback(null, list[0]!.address, list[0]!.family);
  });
};

/** Why `url` may not be a webhook target, or null when it may. Resolves the host name first. */
export async function webhookTargetRefusal(url: string, allowPrivate: boolean): Promise<string | null> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'must be an absolute http(s) URL';
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return 'must be an http(s) URL';
  if (parsed.username || parsed.password) return 'must not contain credentials';
  if (allowPrivate) return null;
  const host = parsed.hostname.replace(/^\[|\]$/g, '');
  if (net.isIP(host)) return isPrivateAddress(host) ? 'points to a loopback, private or link-local address' : null;
  let addresses: dns.LookupAddress[];
  try {
    addresses = await dns.promises.lookup(host, { all: true });
  } catch {
    return `host ${host} could not be resolved`;
  }
  if (addresses.length === 0 || addresses.some((a) => isPrivateAddress(a.address))) return 'resolves to a loopback, private or link-local address';
  return null;
}

import { isIPv4, isIPv6 } from 'node:net';

/** True for an IPv4 address in 127.0.0.0/8, written as four decimal numbers. */
function isLoopbackIPv4(address: string): boolean {
  return isIPv4(address) && address.split('.')[0] === '127';
}

/**
 * True when `host` names this machine's loopback interface: `localhost`, any address in 127.0.0.0/8
 * (`127.0.0.2` too), `::1` (also in brackets) and IPv4-mapped loopback (`::ffff:127.0.0.1`). A board bound
 * to such an address is for this machine only.
 */
export function isLoopbackHost(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const name = bare.toLowerCase();
  if (name === 'localhost') return true;
  if (isLoopbackIPv4(name)) return true;
  if (!isIPv6(name)) return false;
  if (name === '::1' || name === '0:0:0:0:0:0:0:1') return true;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(name);
  return mapped !== null && isLoopbackIPv4(mapped[1]!);
}

/**
 * True when a request's `Host` header names a loopback address (with or without a port): what a browser
 * sends for a page it opened on this machine. A web page elsewhere that points its own name at
 * 127.0.0.1 (DNS rebinding) sends its own name, which this refuses.
 */
export function isLoopbackHostHeader(header: string): boolean {
  const match = /^(\[[^\]]+\]|[^:]+)(?::\d+)?$/.exec(header.trim());
  return match !== null && isLoopbackHost(match[1]!);
}

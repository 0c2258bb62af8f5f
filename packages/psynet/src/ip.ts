import IPCIDR from 'ip-cidr';

/** An IPv4 address with its mask, both as unsigned 32-bit big-endian integers (Nebula's encoding). */
export interface IPv4Net {
  address: number;
  mask: number;
}

const DOTTED = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function isIPv4(text: string): boolean {
  return DOTTED.test(text);
}

export function ipToNumber(text: string): number {
  return text.split('.').reduce((acc, part) => acc * 256 + Number(part), 0) >>> 0;
}

export function numberToIp(value: number): string {
  return [24, 16, 8, 0].map((shift) => (value >>> shift) & 0xff).join('.');
}

export function prefixToMask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** The prefix length of a contiguous mask, or undefined for a non-canonical one. */
export function maskToPrefix(mask: number): number | undefined {
  for (let prefix = 0; prefix <= 32; prefix++) if (prefixToMask(prefix) === mask >>> 0) return prefix;
  return undefined;
}

/** Go's IPNet.String(): "a.b.c.d/len", or the mask in hex when it is not contiguous. */
export function formatNet(net: IPv4Net): string {
  const prefix = maskToPrefix(net.mask);
  return `${numberToIp(net.address)}/${prefix ?? net.mask.toString(16).padStart(8, '0')}`;
}

/** A network in CIDR notation, parsed with ip-cidr; host bits are kept in `address`. */
export interface Cidr extends IPv4Net {
  text: string;
  prefix: number;
  /** First and last address of the network, as numbers. */
  first: number;
  last: number;
}

export function parseCidr(text: string): Cidr | undefined {
  const [addressText, prefixText] = text.split('/');
  if (!addressText || !isIPv4(addressText) || !prefixText || !/^\d{1,2}$/.test(prefixText)) return undefined;
  if (!IPCIDR.isValidCIDR(text)) return undefined;
  const cidr = new IPCIDR(text);
  const prefix = Number(prefixText);
  if (prefix > 32) return undefined;
  return {
    text,
    prefix,
    address: ipToNumber(addressText),
    mask: prefixToMask(prefix),
    first: ipToNumber(cidr.start<string>()),
    last: ipToNumber(cidr.end<string>()),
  };
}

/** Whether `inner` lies entirely inside `outer`. */
export function cidrInside(inner: Cidr, outer: Cidr): boolean {
  return new IPCIDR(outer.text).contains(numberToIp(inner.first)) && new IPCIDR(outer.text).contains(numberToIp(inner.last));
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.first <= b.last && b.first <= a.last;
}

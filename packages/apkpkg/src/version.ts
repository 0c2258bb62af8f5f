/**
 * Version comparison exactly like apk-tools 2 (`src/version.c`): a tokenizer over
 * `number("." number)* [letter] ("_" suffix [number])* ["-r" number]`, compared token by token.
 */
import { InvalidVersionError } from './errors.js';

// Token types in apk's order: a version that "ends here" loses to one that continues with a
// later type, except for pre-release suffixes.
enum Token {
  Invalid = -1,
  DigitOrZero = 0,
  Digit = 1,
  Letter = 2,
  Suffix = 3,
  SuffixNumber = 4,
  RevisionNumber = 5,
  End = 6,
}

const PRE_SUFFIXES = ['alpha', 'beta', 'pre', 'rc'];
const POST_SUFFIXES = ['cvs', 'svn', 'git', 'hg', 'p'];

class Cursor {
  pos = 0;
  constructor(readonly text: string) {}
  get rest(): number {
    return this.text.length - this.pos;
  }
  at(i = 0): string {
    return this.text[this.pos + i] ?? '';
  }
}

const isDigit = (c: string): boolean => c >= '0' && c <= '9';
const isLower = (c: string): boolean => c >= 'a' && c <= 'z';

function nextToken(type: Token, c: Cursor): Token {
  let next = Token.Invalid;
  const ch = c.at();
  if (c.rest === 0 || ch === '\0') {
    next = Token.End;
  } else if ((type === Token.Digit || type === Token.DigitOrZero) && isLower(ch)) {
    next = Token.Letter;
  } else if (type === Token.Letter && isDigit(ch)) {
    next = Token.Digit;
  } else if (type === Token.Suffix && isDigit(ch)) {
    next = Token.SuffixNumber;
  } else {
    if (ch === '.') next = Token.DigitOrZero;
    else if (ch === '_') next = Token.Suffix;
    else if (ch === '-') {
      if (c.rest > 1 && c.at(1) === 'r') {
        next = Token.RevisionNumber;
        c.pos++;
      }
    }
    c.pos++;
  }
  if (next < type) {
    const allowed =
      (next === Token.DigitOrZero && type === Token.Digit) ||
      (next === Token.Suffix && type === Token.SuffixNumber) ||
      (next === Token.Digit && type === Token.Letter);
    if (!allowed) next = Token.Invalid;
  }
  return next;
}

/** Reads one token's value; returns the value and the type of the token that follows. */
function getToken(type: Token, c: Cursor): { value: number; next: Token } {
  if (c.rest <= 0) return { value: 0, next: Token.End };
  let value = 0;
  let length = 0;
  let forced = Token.Invalid;
  switch (type) {
    // biome-ignore lint/suspicious/noFallthroughSwitchClause: see below
    case Token.DigitOrZero:
      if (c.at() === '0') {
        // Leading zeros after a dot: "01" sorts below "1", "001" below "01".
        while (length + 1 < c.rest && c.at(length + 1) === '0') length++;
        forced = Token.Digit;
        value = -length;
        break;
      }
    // falls through: a digit that is not a leading zero reads as Digit
    case Token.Digit:
    case Token.SuffixNumber:
    case Token.RevisionNumber:
      while (length < c.rest && isDigit(c.at(length))) {
        value = value * 10 + Number(c.at(length));
        length++;
      }
      if (length >= 18) return { value: 0, next: Token.Invalid };
      break;
    case Token.Letter:
      value = c.at().charCodeAt(0);
      length = 1;
      break;
    case Token.Suffix: {
      const word = c.text.slice(c.pos);
      const pre = PRE_SUFFIXES.findIndex((s) => word.startsWith(s));
      if (pre !== -1) {
        value = pre - PRE_SUFFIXES.length;
        length = PRE_SUFFIXES[pre]!.length;
        break;
      }
      const post = POST_SUFFIXES.findIndex((s) => word.startsWith(s));
      if (post !== -1) {
        value = post;
        length = POST_SUFFIXES[post]!.length;
        break;
      }
      return { value: 0, next: Token.Invalid };
    }
    default:
      return { value: 0, next: Token.Invalid };
  }
  c.pos += length;
  if (c.rest === 0) return { value, next: Token.End };
  if (forced !== Token.Invalid) return { value, next: forced };
  return { value, next: nextToken(type, c) };
}

/**
 * The grammar psyops builds to (abuild's): apk's tokenizer alone accepts a few more strings, such
 * as `1.0.a`, `v1.0` or `1.0-r`, which come only from foreign indexes.
 */
const VERSION_GRAMMAR = /^[0-9]{1,17}(\.[0-9]{1,17})*[a-z]?(_(alpha|beta|pre|rc|cvs|svn|git|hg|p)[0-9]{0,17})*(-r[0-9]{1,17})?$/;

/**
 * True when `apk version -c` accepts `version` (apk-tools 2.14 `apk_version_validate`: the
 * tokenizer reaches the end without an invalid token). Laxer than isValidVersion; apk-tools 3's
 * `~hash` component is not part of 2.14's tokenizer, so `1.0~abc` is refused as 2.14 refuses it.
 */
export function isApkVersion(version: string): boolean {
  const c = new Cursor(version);
  let type: Token = Token.Digit;
  while (type !== Token.End && type !== Token.Invalid) type = getToken(type, c).next;
  return type === Token.End;
}

/** True when `version` is a valid version to build (`1.2.3`, `2.1_rc1-r3`, `1.0a_p2`): abuild's grammar, which apk also accepts. */
export function isValidVersion(version: string): boolean {
  return VERSION_GRAMMAR.test(version) && isApkVersion(version);
}

/** Throws InvalidVersionError unless apk accepts `version`; `what` names it in the message. */
function assertApkVersion(version: string, what = 'version'): void {
  if (!isApkVersion(version)) {
    throw new InvalidVersionError(
      `invalid ${what} "${version}": apk reads number(.number)*[letter](_suffix[number])*[-rN], suffixes alpha beta pre rc cvs svn git hg p`,
    );
  }
}

export type VersionOrder = -1 | 0 | 1;

function compareTokens(a: string, b: string, fuzzy: boolean): VersionOrder {
  const ca = new Cursor(a);
  const cb = new Cursor(b);
  let at: Token = Token.Digit;
  let bt: Token = Token.Digit;
  let av = 0;
  let bv = 0;
  for (let guard = 0; at === bt && at !== Token.End && at !== Token.Invalid && av === bv; guard++) {
    if (guard > a.length + b.length + 2) break;
    const ra = getToken(at, ca);
    const rb = getToken(bt, cb);
    av = ra.value;
    bv = rb.value;
    at = ra.next;
    bt = rb.next;
    if (fuzzy && bt === Token.End && av === bv) return 0;
  }
  if (av < bv) return -1;
  if (av > bv) return 1;
  if (at === bt) return 0;
  if (at === Token.Suffix && getToken(at, new Cursor(a.slice(ca.pos))).value < 0) return -1;
  if (bt === Token.Suffix && getToken(bt, new Cursor(b.slice(cb.pos))).value < 0) return 1;
  if (at > bt) return -1;
  if (bt > at) return 1;
  return 0;
}

/**
 * Compares two versions like `apk version -t`: -1 when a < b, 0 when equal, 1 when a > b.
 * Every version `apk version -c` accepts is ordered; others throw InvalidVersionError (apk would
 * give an arbitrary order).
 */
export function compareVersions(a: string, b: string): VersionOrder {
  assertApkVersion(a);
  assertApkVersion(b);
  return compareTokens(a, b, false);
}

/** `~` matching: true when `version` starts with the tokens of `prefix` (`2.1_rc1-r3` ~ `2.1`). */
export function fuzzyMatchesVersion(version: string, prefix: string): boolean {
  assertApkVersion(version);
  assertApkVersion(prefix);
  return compareTokens(version, prefix, true) === 0;
}

/** `<`, `=` or `>`, as `apk version -t` prints it. */
export function versionOrderSymbol(order: VersionOrder): '<' | '=' | '>' {
  return order < 0 ? '<' : order > 0 ? '>' : '=';
}

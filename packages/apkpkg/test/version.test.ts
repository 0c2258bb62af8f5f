import { describe, expect, it } from 'vitest';
import { compareVersions, InvalidDependencyError, InvalidVersionError, isValidVersion, versionOrderSymbol } from '../src/index.ts';
import { parseDependency } from '../src/dependency.ts';
import { fuzzyMatchesVersion, isApkVersion } from '../src/version.ts';

// Pairs verified with `apk version -t` (apk-tools 2.14.10, see the spec), then pairs from
// apk-tools' own test/version.data (only those valid under the strict grammar).
const TABLE = `
1.0 < 1.0-r0
1.2.3-r0 > 1.2.3
1.0 < 1.0.0
1.0a > 1.0
1.0a < 1.0.1
1.0_rc1 < 1.0
1.0_alpha < 1.0_beta
1.0_pre > 1.0_beta
1.0_rc < 1.0_rc0
1.0_rc1 > 1.0_rc
1.0_p1 > 1.0
1.0-r1 < 1.0_p1
1.0_p1 < 1.0a
1.0_cvs < 1.0_svn
1.0_hg1 < 1.0_p1
1.0_git20230101 > 1.0
2.0_rc1-r3 < 2.0_rc1-r10
1.0_beta2 < 1.0_beta10
1.2 < 1.10
1.01 < 1.1
1.001 < 1.01
1.010 > 1.01
1.0 > 1.00
01.2 = 1.2
1.0-r1 = 1.0-r01
1.2.3-r0 = 1.2.3-r00
6.1.55-r0 > 6.1.6-r0
20230101 > 3.0
2023.08.02 < 2023.8.2
1.0.20230802 < 1.0.20230810
2.34 > 0.1.0_alpha
0.1.0_alpha = 0.1.0_alpha
0.1.0_alpha < 0.1.3_alpha
0.1.0_alpha2 > 0.1.0_alpha
0.1.0_alpha < 2.2.39-r1
1.0.4-r3 < 1.0.4-r4
1.1 > 1.1_alpha1
1.2.1 > 1.2
1.2 < 1.3_alpha
1.3_alpha < 1.3_alpha2
3.10.18-r1 > 2.3.0b-r1
2.3.0b-r1 < 2.3.0b-r2
0.12.3 > 0.12
0.13_beta5 > 0.9.12
1.2.11 < 1.2.12.1
3.1_p16 < 3.1_p17
3.1_p17 > 1.06-r6
1.06-r6 < 006
006 > 1.0.0
2.16.1-r3 = 2.16.1-r3
2.59 < 20050718-r1
3.9.8-r5 > 2.01.01_alpha10
2.01.01_alpha10 > 0.94
1.0 > 0.99.3.20040818
1.39 > 1.00_beta2
4.2.52_p2-r1 < 4.2.52_p4-r2
4.2.52_p4-r2 > 1.02.07
20060720 > 3.0.20060720
2.5.1-r8 < 2.5.1a-r1
20040401 > 2.0.0_rc3-r1
3.0.0-r2 < 021109-r3
0.9.16-r1 < 3.9_pre20060124
3.9_pre20060124 > 0.01
1.1.7 < 6b-r7
0.10.0-r1 > 0.10.0
0.10.0 < 0.10.1_rc1
1.0-r1 > 0.15.1b
0.15.1b-r2 > 0.15.1b
22.7.3-r1 > 22.7
2.1_pre20 < 2.1_pre26
2.10.1 > 02.08.01b
3.81 > 1.6d
1.6d > 1.2.07.8
1.2.07.8 < 1.2.12.04
0.59s-r11 < 0.65
0.20070118 < 0.20070207_rc1
0.20070207_rc1 < 1.0
3.7_p1 > 1.3
4.5_p1-r1 > 4.5_p1
0.9.8c-r1 < 0.9.8d
2.2.3-r2 < 013
1.7 < 1.7b
1.8.5 < 1.8.5_p2
2.9.11_pre20051101-r3 > 2.9.11_pre20051101
1.6.8_p12-r1 > 1.6.8_p9-r2
0.9.28-r2 < 0.9.28.1
0.9.28.1 < 087-r1
104-r11 > 104-r9
5.52-r1 > 1.2.5_rc2
20040406-r1 > 2.12r-r4
2.12r-r4 < 2.12r-r5
7.0.17 < 7.0.174
0.3.4_pre20061029 < 0.4.0
1.3-r0 < 1.3.1-r0
1.3_pre1-r1 < 1.3.2
1.0_p10-r0 > 1.0_p9-r0
0.1.0_alpha_pre2 < 0.1.0_alpha
1.0.0_pre20191002222144-r0 < 1.0.0_pre20210530193627-r0
`
  .trim()
  .split('\n')
  .map((line) => line.split(' ') as [string, '<' | '=' | '>', string]);

describe('compareVersions', () => {
  it('has at least 60 pairs', () => {
    expect(TABLE.length).toBeGreaterThanOrEqual(60);
  });

  it.each(TABLE)('%s %s %s', (a, op, b) => {
    expect(versionOrderSymbol(compareVersions(a, b))).toBe(op);
    // The relation must be antisymmetric: swapping the arguments flips the result.
    const flipped = op === '<' ? '>' : op === '>' ? '<' : '=';
    expect(versionOrderSymbol(compareVersions(b, a))).toBe(flipped);
  });

  // Rejected by `apk version -c` (apk-tools 2.14.10, see the spec) and by 2.14's tokenizer
  // (src/version.c next_token/get_token: a second letter, an unknown suffix, `-` not followed by
  // `r`, a space, 18 digits). `~hash` is apk-tools 3's TOKEN_COMMIT_HASH, unknown to 2.14.
  it.each(['abc', '1_0', '1.0aa', '1.0 ', '1.0_foo', '1.0-1', '1.0_rc1a', '123456789012345678', '1.0~abc', '1.0-r1~abc', '1.0-r1_p1', '1.0_p1a'])(
    'rejects the invalid version %j',
    (version) => {
      expect(isApkVersion(version)).toBe(false);
      expect(isValidVersion(version)).toBe(false);
      expect(() => compareVersions(version, '1.0')).toThrow(InvalidVersionError);
      expect(() => compareVersions('1.0', version)).toThrow(InvalidVersionError);
      expect(() => parseDependency(`foo>=${version}`)).toThrow(InvalidDependencyError);
    },
  );

  // apk_version_validate is the tokenizer alone, so `apk version -c` accepts these (the spec notes
  // `1.0.a`); apk orders them, so psyops must too. They stay outside the grammar psyops builds to.
  it.each(['1.0.a', '1.0-r', '1..0', '.1', 'v1.0', '1.0-r1-r2', ''])('accepts and orders %j as apk does, but does not build it', (version) => {
    expect(isApkVersion(version)).toBe(true);
    expect(isValidVersion(version)).toBe(false);
    expect(() => compareVersions(version, '1.0')).not.toThrow();
    if (version !== '') expect(parseDependency(`foo>=${version}`)).toMatchObject({ name: 'foo', version });
  });

  // Orders that follow from 2.14's token rules for the lax strings above: a missing number reads
  // as 0 (get_token over no digits), so `.1` = `0.1` and `1.0-r` = `1.0-r0`; a version that goes on
  // with a dotted number or letter is greater than one that ends (step 4 of the spec's paraphrase).
  it.each([
    ['.1', '=', '0.1'],
    ['1.0-r', '=', '1.0-r0'],
    ['1.0-r', '>', '1.0'],
    ['1.0.a', '>', '1.0'],
    ['1.0.a', '<', '1.0.1'],
    // Like the verified 1.0a < 1.0.1: going on with a dotted number beats going on with a letter.
    ['1.0.a', '>', '1.0a'],
    ['', '<', '0.1'],
  ] as const)('%s %s %s', (a, op, b) => {
    expect(versionOrderSymbol(compareVersions(a, b))).toBe(op);
  });

  it('accepts the longest number apk accepts (17 digits)', () => {
    expect(isValidVersion('12345678901234567')).toBe(true);
  });
});

describe('fuzzy (~) matching', () => {
  it.each([
    ['2.1_rc1-r3', '2.1', true],
    ['2.1_rc1-r3', '2.1_rc1', true],
    ['2.1_rc1-r3', '2.10', false],
    ['2.10', '2.1', false],
    ['1.2.3-r0', '1.2', true],
    ['1.3', '1.2', false],
  ] as const)('%s ~ %s is %s', (version, prefix, expected) => {
    expect(fuzzyMatchesVersion(version, prefix)).toBe(expected);
  });
});

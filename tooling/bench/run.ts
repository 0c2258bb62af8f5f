// `pnpm bench`: performance figures, printed as ratios against reference tools run in the same
// process. Never part of `pnpm test`: these machines are too noisy for timing assertions.
//   BENCH_SIZE_MIB (default 1024)  size of the file to sign and verify
//   BENCH_ROUNDS (default 5)       rounds per tool; the median is reported
import { benchSigning } from './signing.ts';

const sizeMiB = Number(process.env.BENCH_SIZE_MIB ?? 1024);
const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
await benchSigning(sizeMiB, rounds);
await (await import('./psynet.ts')).benchPsynet(Number(process.env.BENCH_PSYNET_CERTS ?? 500), Number(process.env.BENCH_PSYNET_CLI ?? 20));
await (await import('./apkpkg.ts')).benchApkpkg(Number(process.env.BENCH_APK_TREE_MIB ?? 200), Number(process.env.BENCH_APK_PACKAGES ?? 2000), rounds);
await (await import('./siteapi.ts')).benchSiteapi(Number(process.env.BENCH_SITE_FILES ?? 1000), Number(process.env.BENCH_SITE_ROUNDS ?? 3));

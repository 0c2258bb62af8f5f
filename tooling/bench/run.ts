// `pnpm bench`: performance figures, printed as ratios against reference tools run in the same
// process. Never part of `pnpm test`: these machines are too noisy for timing assertions.
//   BENCH_SIZE_MIB (1024), BENCH_ROUNDS (5)        signing: file size, rounds (medians reported)
//   BENCH_PSYNET_CERTS (500), BENCH_PSYNET_CLI (20)  psynet: certificates, whole-CLI sample
//   BENCH_APK_TREE_MIB (200), BENCH_APK_PACKAGES (2000)  apkpkg: tree to package, packages to index
//   BENCH_SITE_FILES (1000), BENCH_SITE_ROUNDS (3)  siteapi: files to deploy, rounds
//   BENCH_IMAGE_ROUNDS (3)                         build-iso: full and overlay-only rebuilds (and one boot each, BIOS and UEFI)
//   BENCH_NODEBOOT_ROUNDS (1)                      nodeboot: QEMU start to "configured", BIOS and UEFI, against a minimal image on the same kernel
//   BENCH_SSH_ROUNDS (20)                          two nodes: both configured, first packet over psynet, SSH round trips over psynet and over the forward
import { benchApkpkg } from './apkpkg.ts';
import { benchImagebuild } from './imagebuild.ts';
import { benchNodeboot } from './nodeboot.ts';
import { benchPsynet } from './psynet.ts';
import { benchSigning } from './signing.ts';
import { benchSiteapi } from './siteapi.ts';
import { benchPsynetNodes } from './two-nodes.ts';

const setting = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const rounds = setting('BENCH_ROUNDS', 5);

await benchSigning(setting('BENCH_SIZE_MIB', 1024), rounds);
await benchPsynet(setting('BENCH_PSYNET_CERTS', 500), setting('BENCH_PSYNET_CLI', 20));
await benchApkpkg(setting('BENCH_APK_TREE_MIB', 200), setting('BENCH_APK_PACKAGES', 2000), rounds);
await benchSiteapi(setting('BENCH_SITE_FILES', 1000), setting('BENCH_SITE_ROUNDS', 3));
await benchImagebuild(setting('BENCH_IMAGE_ROUNDS', 3));
await benchNodeboot(setting('BENCH_NODEBOOT_ROUNDS', 1));
await benchPsynetNodes(setting('BENCH_SSH_ROUNDS', 20));

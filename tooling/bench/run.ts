// `pnpm bench`: performance figures, printed as ratios against reference tools run in the same
// process. Never part of `pnpm test`: these machines are too noisy for timing assertions.
//   BENCH_ONLY (all)                               comma-separated: signing,psynet,apkpkg,siteapi,imagebuild,nodeboot,two-nodes,update
//   BENCH_SIZE_MIB (1024), BENCH_ROUNDS (5)        signing: file size, rounds (medians reported)
//   BENCH_PSYNET_CERTS (500), BENCH_PSYNET_CLI (20)  psynet: certificates, whole-CLI sample
//   BENCH_APK_TREE_MIB (200), BENCH_APK_PACKAGES (2000)  apkpkg: tree to package, packages to index
//   BENCH_SITE_FILES (1000), BENCH_SITE_ROUNDS (3)  siteapi: files to deploy, rounds
//   BENCH_IMAGE_ROUNDS (3)                         build-iso: full and overlay-only rebuilds (and one boot each, BIOS and UEFI)
//   BENCH_NODEBOOT_ROUNDS (1)                      nodeboot: QEMU start to "configured", BIOS and UEFI, against a minimal image on the same kernel
//   BENCH_SSH_ROUNDS (20)                          two nodes: both configured, first packet over psynet, SSH round trips over psynet and over the forward
//   BENCH_UPDATE_ROUNDS (3)                        update: psyops-node update against wget + minisign + dd on the same guest; reboots into r2 and back from a broken r3
import { benchApkpkg } from './apkpkg.ts';
import { benchImagebuild } from './imagebuild.ts';
import { benchNodeboot } from './nodeboot.ts';
import { benchPsynet } from './psynet.ts';
import { benchSigning } from './signing.ts';
import { benchSiteapi } from './siteapi.ts';
import { benchPsynetNodes } from './two-nodes.ts';
import { benchUpdate } from './update.ts';

const setting = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const rounds = setting('BENCH_ROUNDS', 5);
const only = process.env.BENCH_ONLY?.split(',').map((name) => name.trim());
const wanted = (name: string) => only === undefined || only.includes(name);

if (wanted('signing')) await benchSigning(setting('BENCH_SIZE_MIB', 1024), rounds);
if (wanted('psynet')) await benchPsynet(setting('BENCH_PSYNET_CERTS', 500), setting('BENCH_PSYNET_CLI', 20));
if (wanted('apkpkg')) await benchApkpkg(setting('BENCH_APK_TREE_MIB', 200), setting('BENCH_APK_PACKAGES', 2000), rounds);
if (wanted('siteapi')) await benchSiteapi(setting('BENCH_SITE_FILES', 1000), setting('BENCH_SITE_ROUNDS', 3));
if (wanted('imagebuild')) await benchImagebuild(setting('BENCH_IMAGE_ROUNDS', 3));
if (wanted('nodeboot')) await benchNodeboot(setting('BENCH_NODEBOOT_ROUNDS', 1));
if (wanted('two-nodes')) await benchPsynetNodes(setting('BENCH_SSH_ROUNDS', 20));
if (wanted('update')) await benchUpdate(setting('BENCH_UPDATE_ROUNDS', 3));

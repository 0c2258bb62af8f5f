// Preloaded into a measured node process (NODE_OPTIONS=--require): at exit it appends the
// process's peak resident memory in KiB to the file named by PSYOPS_BENCH_PEAK_FILE.
const { appendFileSync } = require('node:fs');

process.on('exit', () => {
  appendFileSync(process.env.PSYOPS_BENCH_PEAK_FILE, `${process.resourceUsage().maxRSS}\n`);
});

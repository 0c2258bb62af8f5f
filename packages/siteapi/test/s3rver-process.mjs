// A real S3-compatible server (s3rver) in its own process, for tests and benchmarks:
//   node --openssl-legacy-provider s3rver-process.mjs DATA_DIR BUCKET...
// s3rver encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3 only offers with the
// legacy provider: without the flag, listing more than 1,000 keys fails with InternalError.
// Listens on 127.0.0.1 on a free port and prints one JSON line per fact:
//   {"port":N} once started, then {"created":"<key>"} for every object written.
// Ends on SIGTERM or when stdin closes (so it never outlives the test that started it).
import S3rver from 's3rver';

const [directory, ...buckets] = process.argv.slice(2);
const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: buckets.map((name) => ({ name })) });
server.on('event', (event) => {
  for (const record of event.Records) {
    if (record.eventName.startsWith('ObjectCreated')) process.stdout.write(`${JSON.stringify({ created: decodeURIComponent(record.s3.object.key) })}\n`);
  }
});
const { port } = await server.run();
process.stdout.write(`${JSON.stringify({ port })}\n`);
const stop = () => server.close().then(() => process.exit(0));
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();

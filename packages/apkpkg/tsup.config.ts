import { defineLibrary } from '../../tooling/tsup.base.ts';

// format: the byte-level pieces imagebuild writes a root tree and apkovl with, kept out of the main API.
export default defineLibrary(['src/index.ts', 'src/format.ts']);

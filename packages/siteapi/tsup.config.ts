import { defineLibrary } from '../../tooling/tsup.base.ts';

// schemas: the document formats alone (zod only); names: the name rules without zod, for nodeboot's single-file bundle;
// validators: the node's document checks, which that bundle swaps for precompiled ones.
export default defineLibrary(['src/index.ts', 'src/schemas.ts', 'src/names.ts', 'src/validators.ts']);

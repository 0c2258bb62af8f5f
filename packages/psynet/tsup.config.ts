import { defineLibrary } from '../../tooling/tsup.base.ts';

// nebula-defaults: its own entry, so nodeboot's bundle takes it without psynet's YAML library.
export default defineLibrary(['src/index.ts', 'src/nebula-defaults.ts']);

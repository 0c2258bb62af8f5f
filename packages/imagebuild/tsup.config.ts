import { defineLibrary } from '../../tooling/tsup.base.ts';

export default defineLibrary();

import type { VolumeMounter } from '../src/slot-update/volumes.js';

/** Volumes by label as directories; each mount recorded. */
export function dirMounter(volumes: Record<string, string>, log: string[]): VolumeMounter {
  return {
    async mount(label, type, mode) {
      const dir = volumes[label];
      if (dir === undefined) throw new Error(`no volume ${label}`);
      log.push(`mount ${type} ${label} ${mode}`);
      return { dir, unmount: async () => void log.push(`umount ${label}`) };
    },
  };
}

/** Update tars for the node's tests: the one helper siteapi's tests make them with (ustar, slot.json first). */
import { slotTar as updateTar } from '../../siteapi/test/update-tar.ts';
import type { VolumeMounter } from '../src/slot-update/volumes.js';

export const slotTar = (release: string, arch = 'x86_64'): Buffer => updateTar({ release, arch });

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

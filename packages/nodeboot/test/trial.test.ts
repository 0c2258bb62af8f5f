import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatGrubEnv } from '@psyops/core';
import { UNKNOWN_TRIAL_FAILURE, finishTrial, slotBootStatus } from '../src/postboot/trial.js';
import { TempRootSystem } from '../src/temp-root-system.js';
import { tempDir } from './fixtures.js';
import { dirMounter } from './dir-mounter.js';

function trialNode(cmdline: string) {
  const root = tempDir('trialroot');
  for (const dir of ['proc', 'media/boot', 'dev', 'var/lib/psyopsOS']) mkdirSync(join(root, dir), { recursive: true });
  writeFileSync(join(root, 'proc/cmdline'), `${cmdline}\n`);
  writeFileSync(join(root, 'media/boot/.psyopsOS-release'), 'r3 x86_64\n');
  writeFileSync(join(root, 'dev/watchdog'), '');
  const esp = tempDir('trialesp');
  mkdirSync(join(esp, 'boot/grub'), { recursive: true });
  writeFileSync(join(esp, 'boot/grub/grubenv'), formatGrubEnv({ psyops_good: 'A', psyops_try: '', psyops_trying: 'B' }));
  const slotB = tempDir('trialslotB');
  writeFileSync(join(slotB, 'psyopsOS-slot.json'), JSON.stringify({ format: 'psyops-slot/1', version: 'r3' }));
  const log: string[] = [];
  const mounter = dirMounter({ 'psyopsOS-B': slotB, 'PSYOPS-ESP': esp }, log);
  const system = new TempRootSystem({ root });
  const grubenv = () => execFileSync('grub-editenv', [join(esp, 'boot/grub/grubenv'), 'list'], { encoding: 'utf8' });
  return { root, system, mounter, log, grubenv };
}

describe('trial boots', () => {
  it('a trial that ends ok marks the slot good and disarms the watchdog', async () => {
    const n = trialNode('psyopsos.slot=psyopsOS-B panic=10 psyopsos.trial=1');
    expect(await slotBootStatus(n.system, n.mounter)).toEqual({ release: 'r3', slot: 'B', trial: true });
    const end = await finishTrial(n.system, { status: 'ok', problems: [], release: 'r3', slot: 'B' }, n.mounter);
    expect(end).toEqual({ lines: ['slot B marked good (r3)'], reboot: false });
    expect(n.grubenv()).toBe('psyops_good=B\npsyops_try=\npsyops_trying=\n');
    expect(readFileSync(join(n.root, 'dev/watchdog'), 'utf8')).toBe('V');
    expect(n.system.effects.filter((e) => e.detail === 'reboot')).toEqual([]);
  });

  it('a failed trial is recorded and asks for a reboot; the rolled-back boot reports why', async () => {
    const n = trialNode('psyopsos.slot=psyopsOS-B psyopsos.trial=1');
    const end = await finishTrial(n.system, { status: 'degraded', problems: ['config: refused', 'k3s: failed'], release: 'r3', slot: 'B' }, n.mounter);
    expect(end).toEqual({ lines: ['trial of r3 in slot B failed: config: refused; k3s: failed; rebooting into the last good slot'], reboot: true });
    expect(JSON.parse(readFileSync(join(n.root, 'var/lib/psyopsOS/trial-failure.json'), 'utf8'))).toEqual({
      slot: 'B',
      version: 'r3',
      reason: 'config: refused; k3s: failed',
    });
    expect(n.grubenv()).toContain('psyops_good=A');
    expect(readFileSync(join(n.root, 'dev/watchdog'), 'utf8')).toBe('');

    writeFileSync(join(n.root, 'proc/cmdline'), 'psyopsos.slot=psyopsOS-A psyopsos.rolled_back_from=B\n');
    writeFileSync(join(n.root, 'media/boot/.psyopsOS-release'), 'r2 x86_64\n');
    expect(await slotBootStatus(n.system, n.mounter)).toEqual({
      release: 'r2',
      slot: 'A',
      trial: false,
      rollback: { slot: 'B', version: 'r3', reason: 'config: refused; k3s: failed' },
    });
    expect(n.log).toContain('mount ext4 psyopsOS-B ro');
  });

  it('a rollback without a matching record: the trial never reached postboot', async () => {
    const n = trialNode('psyopsos.slot=psyopsOS-A psyopsos.rolled_back_from=B');
    writeFileSync(join(n.root, 'var/lib/psyopsOS/trial-failure.json'), JSON.stringify({ slot: 'B', version: 'r1', reason: 'old' }));
    expect((await slotBootStatus(n.system, n.mounter)).rollback).toEqual({ slot: 'B', version: 'r3', reason: UNKNOWN_TRIAL_FAILURE });
  });
});

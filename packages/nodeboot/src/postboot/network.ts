/** Step 3: hostname, interfaces (psy0 by MAC), the SSH host key, networking and sshd. */
import { NODE_INTERFACE, type SecretVolume } from '../secret-volume.js';
import type { NodeSystem } from '../system.js';
import { UNCONFIGURED_HOSTNAME, failed, ok, oneLine, type Outcome, type StepContext } from './context.js';

/** Sets the hostname in /etc/hostname, /etc/hosts and the kernel. */
export async function setHostname(system: NodeSystem, name: string): Promise<void> {
  await system.writeFile('/etc/hostname', `${name}\n`, 0o644);
  const hosts = (await system.readFile('/etc/hosts'))?.toString('utf8') ?? '127.0.0.1\tlocalhost\n';
  const kept = hosts.split('\n').filter((line) => line !== '' && !line.endsWith('# psyopsOS hostname'));
  await system.writeFile('/etc/hosts', `${[...kept, `127.0.1.1\t${name}\t# psyopsOS hostname`].join('\n')}\n`, 0o644);
  await system.setHostname(name);
}

/** Interfaces, SSH host key, networking, sshd: what worked and what did not. */
async function bringUpNetwork({ system }: StepContext, volume: SecretVolume | undefined): Promise<Outcome> {
  const notes: string[] = [];
  const problems: string[] = [];
  let interfaces = volume?.interfaces;
  if (volume?.mactab) {
    await system.writeFile('/etc/mactab', `${volume.mactab.map((e) => `${e.name} ${e.mac}`).join('\n')}\n`, 0o644);
    try {
      await system.renameInterfaces();
      notes.push(`interfaces renamed (${volume.mactab.map((e) => e.name).join(', ')})`);
    } catch (error) {
      problems.push(`renaming interfaces failed: ${oneLine(error)}`);
    }
  }
  if (interfaces === undefined) {
    // DHCP fallback: on psy0 when the mactab named it, else on the first network card.
    const card = volume?.mactab ? NODE_INTERFACE : (await system.listInterfaces())[0]?.name;
    interfaces = `auto lo\niface lo inet loopback\n${card ? `\nauto ${card}\niface ${card} inet dhcp\n` : ''}`;
    notes.push(card ? `DHCP fallback on ${card}` : 'no network card found');
  }
  await system.writeFile('/etc/network/interfaces', interfaces, 0o644);

  if (volume?.sshHostKey) {
    await system.writeFile('/etc/ssh/ssh_host_ed25519_key', volume.sshHostKey.privateKey, 0o600);
    await system.writeFile('/etc/ssh/ssh_host_ed25519_key.pub', `${volume.sshHostKey.publicKey}\n`, 0o644);
  }

  try {
    await system.bringUpNetworking();
    notes.push('networking up');
  } catch (error) {
    problems.push(`networking failed: ${oneLine(error)}`);
  }
  // A volume with an SSH host key asks for sshd: a node without it cannot be logged into.
  if (await system.hasService('sshd')) {
    try {
      await system.startService('sshd');
      notes.push('sshd started');
    } catch (error) {
      problems.push(`sshd failed: ${oneLine(error)}`);
    }
  } else if (volume?.sshHostKey) problems.push('sshd is not installed in this image (the secret volume has its host key)');
  else notes.push('sshd not installed');
  return problems.length > 0 ? failed([...problems, ...notes].join('; ')) : ok(notes.join('; '));
}

export async function networkStep(context: StepContext, volume: SecretVolume | undefined): Promise<Outcome & { hostname: string }> {
  const hostname = volume?.nodename ?? UNCONFIGURED_HOSTNAME;
  await setHostname(context.system, hostname);
  // The hostname is set: it stands whatever happens to the network below.
  const outcome = await bringUpNetwork(context, volume).catch((error: unknown) => failed(oneLine(error)));
  return { ...outcome, hostname };
}

// Runs one command as a child and makes sure it dies with the benchmark.
//
//   fork('bench/lib/guard.mjs', [command, ...args])
//
// The proxy under test is a program we do not control (the cutover CLI): it does not watch an IPC
// channel, so if the bench runner were killed with SIGKILL it would be left running. This guard is
// forked with IPC; when the channel drops (the runner died, however it died) it SIGKILLs its child.
// SIGTERM/SIGINT are passed on, and the guard exits with the child's code. It reports the child's
// pid so the runner can sample the child's memory, not the guard's.
import { spawn } from 'node:child_process';

const [command, ...args] = process.argv.slice(2);
if (!command) {
  console.error('usage: guard.mjs COMMAND [ARGS...]');
  process.exit(2);
}

const child = spawn(command, args, { stdio: 'inherit' });
process.send?.({ type: 'spawned', pid: child.pid });

child.on('exit', (code) => {
  process.exitCode = code ?? 1; // killed by a signal: report failure
  process.disconnect?.();
  process.exit();
});
child.on('error', (err) => {
  console.error(`guard: cannot start ${command}: ${err.message}`);
  process.exit(1);
});

process.on('disconnect', () => {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  process.exit(1);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => child.kill(sig));

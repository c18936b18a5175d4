// Memory of the process under test, read from /proc/<pid>/status (Linux).
//
// VmRSS is sampled every 100 ms while load runs; VmHWM is the kernel's own high-water mark of RSS
// and catches a peak between two samples. Elsewhere than Linux every value is null.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const KB = 1024;

/**
 * What the process under test really runs with, read from /proc: its node flags (the arguments
 * before the script: the first one without a dash, so flags must be given as --name=value, as the
 * bench gives them) and the values of the named environment variables (null: not set). After a
 * restart through process.execve (Node ≥ 23.11) the pid is the same and /proc shows the new image.
 * Null elsewhere than Linux, or when the process is gone.
 */
export function readTuning(pid, names) {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    const script = argv.findIndex((a, i) => i > 0 && !a.startsWith('-'));
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    const env = {};
    for (const name of names) {
      const entry = environ.find((e) => e.startsWith(`${name}=`));
      env[name] = entry === undefined ? null : entry.slice(name.length + 1);
    }
    return { flags: argv.slice(1, script === -1 ? argv.length : script), env };
  } catch {
    return null;
  }
}

export function readStatus(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (name) => {
      const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
      return m ? (Number(m[1]) * KB) / (KB * KB) : null; // MB
    };
    return { rssMB: field('VmRSS'), hwmMB: field('VmHWM') };
  } catch {
    return { rssMB: null, hwmMB: null };
  }
}

export class RssSampler {
  constructor(pid, intervalMs = 100) {
    this.pid = pid;
    this.intervalMs = intervalMs;
    this.peakMB = null;
    this.samples = 0;
    this.timer = null;
  }

  /** One reading now; also feeds the peak. */
  read() {
    const { rssMB } = readStatus(this.pid);
    if (rssMB !== null) {
      this.samples++;
      if (this.peakMB === null || rssMB > this.peakMB) this.peakMB = rssMB;
    }
    return rssMB;
  }

  start() {
    this.read();
    this.timer = setInterval(() => this.read(), this.intervalMs);
    this.timer.unref();
    return this;
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.read();
    return { peakMB: this.peakMB, hwmMB: readStatus(this.pid).hwmMB, samples: this.samples };
  }
}

export const round1 = (mb) => (mb === null || mb === undefined ? null : Math.round(mb * 10) / 10);

let clockTicks;
function ticksPerSecond() {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/**
 * CPU time (user + system, ms) the process has used so far, from /proc/<pid>/stat; null elsewhere.
 * CPU per request is steadier than req/s on a shared two-core machine: it does not depend on how
 * much of the CPU the load generator and the backends happened to leave over.
 */
export function readCpuMs(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may itself contain spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return ((utime + stime) * 1000) / ticksPerSecond();
  } catch {
    return null;
  }
}

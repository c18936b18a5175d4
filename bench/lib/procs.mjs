// Child processes of one benchmark run: started, awaited and always killed.
//
// Every child is registered in `children` from the moment it is spawned. `stopAll()` ends them
// politely (SIGTERM, then SIGKILL after a grace period); `killAllSync()` is for the 'exit' handler,
// where nothing async runs. Backends and the http-proxy baseline are our own scripts and exit when
// their IPC channel drops; the cutover CLI is wrapped in guard.mjs for the same guarantee.
import { fork } from 'node:child_process';
import http from 'node:http';
import { fileURLToPath } from 'node:url';

const GUARD = fileURLToPath(new URL('./guard.mjs', import.meta.url));
const TAIL_BYTES = 16 * 1024;

/** @type {Set<Child>} */
const children = new Set();

export class Child {
  constructor(name, proc, { verbose }) {
    this.name = name;
    this.proc = proc;
    /** pid of the process doing the work (for a guarded command: the command, not the guard). */
    this.pid = proc.pid;
    this.output = '';
    this.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    this.exitInfo = null;
    this.exited.then((info) => {
      this.exitInfo = info;
      children.delete(this);
    });
    const keep = (chunk) => {
      this.output = (this.output + chunk.toString()).slice(-TAIL_BYTES);
      if (verbose) process.stderr.write(`[${name}] ${chunk}`);
    };
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    children.add(this);
  }

  get running() {
    return this.exitInfo === null;
  }

  /** Last lines of the child's output, for error messages. */
  tail(lines = 15) {
    return this.output.trimEnd().split('\n').slice(-lines).join('\n');
  }

  async stop(graceMs = 3000) {
    if (!this.running) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.killNow(), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  killNow() {
    for (const pid of new Set([this.pid, this.proc.pid])) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

/** Waits for one IPC message of `type`, or fails if the child exits or the deadline passes. */
function waitForMessage(child, type, timeoutMs) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`${child.name} did not report "${type}" within ${timeoutMs} ms\n${child.tail()}`)), timeoutMs);
    const onMessage = (msg) => {
      if (msg && msg.type === type) done(null, msg);
    };
    const onExit = (code, signal) => done(new Error(`${child.name} exited (${signal ?? code}) before it was ready\n${child.tail()}`));
    function done(err, msg) {
      clearTimeout(timer);
      child.proc.off('message', onMessage);
      child.proc.off('exit', onExit);
      if (err) reject(err);
      else resolve(msg);
    }
    child.proc.on('message', onMessage);
    child.proc.once('exit', onExit);
  });
}

/** Forks one of our own scripts and waits for its { type: 'ready', ... } message. */
export async function startScript(name, script, args, { verbose = false, timeoutMs = 10_000, env, execArgv } = {}) {
  const proc = fork(script, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env: env ?? process.env, ...(execArgv ? { execArgv } : {}) });
  const child = new Child(name, proc, { verbose });
  try {
    child.ready = await waitForMessage(child, 'ready', timeoutMs);
  } catch (err) {
    child.killNow();
    throw err;
  }
  return child;
}

/** Starts a command under guard.mjs; `pid` becomes the command's own pid. Readiness is the caller's job. */
export async function startGuarded(name, command, args, { verbose = false, cwd, env } = {}) {
  const proc = fork(GUARD, [command, ...args], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], cwd, env: env ?? process.env });
  const child = new Child(name, proc, { verbose });
  try {
    child.pid = (await waitForMessage(child, 'spawned', 10_000)).pid;
  } catch (err) {
    child.killNow();
    throw err;
  }
  return child;
}

/** Polls `url` until it answers 2xx, the child exits, or the deadline passes. */
export async function waitForHttp(url, child, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (child && !child.running) throw new Error(`${child.name} exited (${child.exitInfo.signal ?? child.exitInfo.code}) while starting\n${child.tail()}`);
    try {
      const status = await getStatus(url);
      if (status >= 200 && status < 300) return;
      last = `HTTP ${status}`;
    } catch (err) {
      last = err.code ?? err.message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} not ready within ${timeoutMs} ms (last: ${last})${child ? `\n${child.tail()}` : ''}`);
}

function getStatus(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
  });
}

export async function stopAll() {
  await Promise.all([...children].map((c) => c.stop()));
}

export function killAllSync() {
  for (const c of children) c.killNow();
}

export function liveChildren() {
  return [...children].filter((c) => c.running).map((c) => ({ name: c.name, pid: c.pid }));
}

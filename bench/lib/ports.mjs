// Ports: ask the kernel for a free one by binding to port 0 on 127.0.0.1, then close it.
// There is a small window in which someone else could take it; callers that hand a port to a
// process they cannot ask (the cutover CLI reads it from its config) retry once on failure.
import net from 'node:net';

/**
 * `n` distinct free ports: each is held open until all are picked, so the kernel cannot hand the
 * same port out twice (two freePort() calls in a row can: a run once gave cutover's admin and data
 * listeners one port, and the proxy refused its config).
 */
export async function freePorts(n, host = '127.0.0.1') {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const server = net.createServer();
      server.unref();
      servers.push(server);
      await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, host, resolve);
      });
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => (s.listening ? s.close(() => resolve()) : resolve()))));
  }
}

/** One free port. */
export async function freePort(host = '127.0.0.1') {
  return (await freePorts(1, host))[0];
}

/** A port with nothing listening on it: connections are refused at once (the `dead` backend). */
export const deadPort = freePort;

// Ports: ask the kernel for a free one by binding to port 0 on 127.0.0.1, then close it.
// There is a small window in which someone else could take it; callers that hand a port to a
// process they cannot ask (the cutover CLI reads it from its config) retry once on failure.
import net from 'node:net';

export function freePort(host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** A port with nothing listening on it: connections are refused at once (the `dead` backend). */
export const deadPort = freePort;

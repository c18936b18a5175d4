/**
 * The pino logger. Credentials are redacted wherever headers appear in a logged object, always:
 * there is no option to turn it off.
 */
import pino from 'pino';

export const SENSITIVE_HEADERS = ['authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-api-key'] as const;

const HEADER_HOLDERS = ['headers', 'req.headers', 'request.headers', 'res.headers', 'response.headers', '*.headers', 'upstream.headers'];

/** Every path a sensitive header can take in what we log. */
export const REDACT_PATHS = HEADER_HOLDERS.flatMap((holder) => SENSITIVE_HEADERS.map((h) => `${holder}["${h}"]`));

export type Logger = pino.Logger;

export function createLogger(level = 'info', destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'cutover' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ fd: 1, sync: false }),
  );
}

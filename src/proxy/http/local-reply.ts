// Answers the proxy gives itself (Envoy's "local replies"): the policy's 403, upstream failures and
// protocol errors. Short text/plain bodies; the status decides whether the connection stays usable.
import { STATUS_CODES } from 'node:http';

export interface LocalReply {
  code: number;
  body: string;
  /** Machine-readable reason, for records. */
  detail: string;
}

export const DENIED: LocalReply = { code: 403, body: 'Access denied\r\n', detail: 'l7_policy_denied' };
export const UPSTREAM_FAILURE: LocalReply = {
  code: 502,
  body: 'upstream connect error or disconnect/reset before headers\r\n',
  detail: 'upstream_reset',
};
export const UPSTREAM_TIMEOUT: LocalReply = {
  code: 504,
  body: 'upstream request timeout\r\n',
  detail: 'upstream_timeout',
};
export const URI_TOO_LONG: LocalReply = { code: 414, body: 'URI too long\r\n', detail: 'uri_too_long' };
export const HEADERS_TOO_LARGE: LocalReply = {
  code: 431,
  body: 'request headers too large\r\n',
  detail: 'request_headers_too_large',
};
export const BAD_REQUEST: LocalReply = {
  code: 400,
  body: 'bad request\r\n',
  detail: 'downstream_protocol_error',
};
export const REQUEST_TIMEOUT: LocalReply = {
  code: 408,
  body: 'request timeout\r\n',
  detail: 'request_timeout',
};
export const NOT_IMPLEMENTED: LocalReply = {
  code: 501,
  body: 'not implemented\r\n',
  detail: 'not_implemented',
};

/** Errors whose name or code says the upstream took too long (→ 504), else a failure (→ 502). */
export function upstreamReply(err: unknown): LocalReply {
  for (
    let e = err as { code?: unknown; cause?: unknown } | undefined, i = 0;
    e && i < 4;
    e = e.cause as never, i++
  ) {
    const code = typeof e.code === 'string' ? e.code : '';
    if (
      code === 'ETIMEDOUT' ||
      code === 'UND_ERR_CONNECT_TIMEOUT' ||
      code === 'UND_ERR_HEADERS_TIMEOUT' ||
      code === 'UND_ERR_BODY_TIMEOUT' ||
      code === 'WEIR_UPSTREAM_TIMEOUT'
    ) {
      return UPSTREAM_TIMEOUT;
    }
  }
  return UPSTREAM_FAILURE;
}

/** The bytes of a complete HTTP/1.1 response that closes the connection. */
export function rawResponse(r: LocalReply): string {
  return (
    `HTTP/1.1 ${r.code} ${STATUS_CODES[r.code] ?? 'Unknown'}\r\n` +
    `content-type: text/plain\r\ncontent-length: ${Buffer.byteLength(r.body)}\r\nconnection: close\r\n\r\n${r.body}`
  );
}

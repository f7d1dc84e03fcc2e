// The echo backend of the Gateway API conformance contract (conformance/gateway-api/README.md,
// a stand-in for echo-basic), as a script the lab runs in a pod (`weir lab exec ns/pod -- node -e`):
// answers every request with JSON naming what it saw (path with query, Host, method, headers),
// its namespace and pod; honours ?delay=, X-Echo-Set-Header, /status/NNN and the retry simulator
// /retry?succeedAfter=N&uuid=U[&responseCode=C]; logs "Echoing back request made to <uri> to client".
// Serves HTTP/1.1 on the port and h2c (HTTP/2 cleartext only) on port + 1, or with a 4th argument
// 'grpc' the GrpcEcho service over h2c on the port. Prints "ready" once it listens. Arguments:
// port, namespace, pod[, grpc].
// weir's resilience tests add a control surface (not part of the conformance contract), sent to
// the pod directly: /control/fail?code=N answers every other request N (0: back to normal),
// /control/stats the requests seen, the most in flight at once, and the same for retries (requests
// with x-envoy-attempt-count > 1), the connections open at once (most) and the last ones closed
// (lifeMs: open to close, idleMs: last response to close), loopback (control) ones aside; /control/reset answers them and zeroes them.
export const echoServerScript = `
const http = require('http');
const http2 = require('http2');
const [port, ns, pod] = process.argv.slice(1);
const attempts = new Map();
let failCode = 0;
let open = 0;
const st0 = () => ({ requests: 0, inFlight: 0, maxInFlight: 0, retries: 0, retriesInFlight: 0, maxRetriesInFlight: 0, connections: 0, maxOpen: open, closed: [] });
let st = st0();
const ms = (d) => { const m = /^(\\d+)(ms|s|m)?$/.exec(d || ''); if (!m) return 0; return +m[1] * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60000 : 1000); };
const handler = (req, res) => {
  const u = new URL(req.url, 'http://echo');
  if (u.pathname.startsWith('/control/')) {
    if (u.pathname === '/control/fail') failCode = +(u.searchParams.get('code') || 0);
    const seen = JSON.stringify({ ...st, failCode });
    if (u.pathname === '/control/reset') st = st0();
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(seen);
  }
  const retry = +(req.headers['x-envoy-attempt-count'] || 1) > 1;
  const s = st;
  s.requests++; s.inFlight++; s.maxInFlight = Math.max(s.maxInFlight, s.inFlight);
  if (retry) { s.retries++; s.retriesInFlight++; s.maxRetriesInFlight = Math.max(s.maxRetriesInFlight, s.retriesInFlight); }
  res.once('close', () => { s.inFlight--; if (retry) s.retriesInFlight--; req.socket.lastDone = Date.now(); });
  const go = () => {
    if (failCode) { res.writeHead(failCode); return res.end(); }
    if (u.pathname === '/health') { res.writeHead(200); return res.end('OK'); }
    const st = /^\\/status\\/(\\d{3})$/.exec(u.pathname);
    if (st) { res.writeHead(+st[1]); return res.end(); }
    if (u.pathname.startsWith('/retry')) {
      const id = u.searchParams.get('uuid') || '';
      const n = (attempts.get(id) || 0) + 1;
      attempts.set(id, n);
      if (n <= +(u.searchParams.get('succeedAfter') || 0)) {
        const code = u.searchParams.get('responseCode');
        if (!code) return req.stream ? req.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR) : req.socket.resetAndDestroy();
        res.writeHead(+code); return res.end();
      }
    }
    const headers = {};
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      if (req.rawHeaders[i].startsWith(':')) continue;
      const k = req.rawHeaders[i].toLowerCase().replace(/(^|-)([a-z])/g, (_, a, b) => a + b.toUpperCase());
      (headers[k] = headers[k] || []).push(req.rawHeaders[i + 1]);
    }
    const out = { 'content-type': 'application/json' };
    for (const kv of (req.headers['x-echo-set-header'] || '').split(',').filter(Boolean)) {
      const i = kv.indexOf(':'); out[kv.slice(0, i).trim()] = kv.slice(i + 1).trim();
    }
    console.log('Echoing back request made to ' + req.url + ' to client (' + req.socket.remoteAddress + ')');
    res.writeHead(200, out);
    res.end(JSON.stringify({ path: req.url, host: req.headers[':authority'] || req.headers.host || '', method: req.method, proto: 'HTTP/' + req.httpVersion, headers, namespace: ns, pod, httpPort: String(req.httpVersion === '2.0' ? +port + 1 : port) }));
  };
  const d = ms(u.searchParams.get('delay'));
  if (d) setTimeout(go, d); else go();
};
if (process.argv[4] === 'grpc') {
  // gRPC (h2c) on the port: GrpcEcho's Echo and EchoTwo answer one message naming the method,
  // the metadata, :authority, namespace and pod (JSON in the gRPC frame); EchoThree is UNIMPLEMENTED.
  const g = http2.createServer();
  g.on('stream', (stream, h) => {
    const path = h[':path'] || '';
    const md = {};
    for (const [k, v] of Object.entries(h)) if (!k.startsWith(':')) md[k] = Array.isArray(v) ? v : [String(v)];
    stream.on('data', () => undefined);
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': path.endsWith('/EchoThree') ? '12' : '0' }));
      if (path.endsWith('/EchoThree')) return stream.end();
      const msg = Buffer.from(JSON.stringify({ fullyQualifiedMethod: path, headers: md, authority: h[':authority'], namespace: ns, pod }));
      const frame = Buffer.alloc(5 + msg.length);
      frame.writeUInt32BE(msg.length, 1);
      msg.copy(frame, 5);
      stream.end(frame);
    });
  });
  g.listen(+port, () => console.log('ready'));
} else {
  const h2 = http2.createServer(handler);
  const h1 = http.createServer(handler);
  h1.on('connection', (sock) => {
    if (/127\\.0\\.0\\.1$/.test(sock.remoteAddress || '')) return; // the control surface's own
    const at = Date.now();
    open++; st.connections++; st.maxOpen = Math.max(st.maxOpen, open);
    sock.on('close', () => {
      open--;
      const now = Date.now();
      st.closed.push({ lifeMs: now - at, idleMs: now - (sock.lastDone || at) });
      if (st.closed.length > 50) st.closed.shift();
    });
  });
  h1.listen(+port, () => h2.listen(+port + 1, () => console.log('ready')));
}
`;

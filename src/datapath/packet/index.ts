// Packet builder and parser for datapath tests: build frames layer by layer
// (ethernet({ payload: ipv4({ src, dst, payload: tcp({ sport, dport, flags: 'S' }) }) })),
// split them into fragments, damage them on purpose, and parse what comes back.
export * from './addr.js';
export * from './checksum.js';
export * from './ethernet.js';
export * from './ip.js';
export * from './l4.js';
export * from './parse.js';

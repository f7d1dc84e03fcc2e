import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  arp,
  crc32c,
  ETH_P,
  ethernet,
  EXT,
  fragment4,
  fragment6,
  ICMP4,
  ICMP6,
  icmp4Echo,
  icmp4Error,
  icmp6Echo,
  icmp6Error,
  inetChecksum,
  ipBytes,
  ipText,
  ipv4,
  ipv6,
  ndpNeighborSolicit,
  parseFrame,
  sctp,
  tcp,
  truncate,
  udp,
} from './index.js';

describe('addresses', () => {
  it('converts IPv4 and IPv6 text to bytes and back', () => {
    assert.deepEqual([...ipBytes('10.1.2.3')], [10, 1, 2, 3]);
    assert.equal(ipText(ipBytes('fd00::1')), 'fd00::1');
    assert.equal(ipText(ipBytes('fd00:0:0:1::')), 'fd00:0:0:1::');
    assert.equal(ipText(ipBytes('::')), '::');
    assert.equal(ipText(ipBytes('::ffff:10.0.0.1')), '::ffff:a00:1');
    assert.equal(ipBytes('2001:db8::8:800:200c:417a').toString('hex'), '20010db80000000000080800200c417a');
    assert.throws(() => ipBytes('10.0.0'), { code: 'ERR_PACKET_ADDRESS' });
  });
});

describe('checksums', () => {
  it('matches a known IPv4 header checksum and the CRC32c check value', () => {
    const hdr = Buffer.from('450000730000400040110000c0a80001c0a800c7', 'hex');
    assert.equal(inetChecksum(hdr), 0xb861);
    assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  });
});

describe('IPv4', () => {
  it('builds a TCP SYN whose fields and checksums parse back', () => {
    const f = ethernet({
      payload: ipv4({
        src: '10.0.0.1',
        dst: '10.0.0.2',
        payload: tcp({ sport: 40000, dport: 80, flags: 'S' }),
      }),
    });
    assert.equal(f.length, 14 + 20 + 20);
    const p = parseFrame(f);
    assert.equal(p.type, ETH_P.IP);
    assert.equal(p.ip?.src, '10.0.0.1');
    assert.equal(p.ip?.dst, '10.0.0.2');
    assert.equal(p.ip?.checksumOk, true);
    assert.equal(p.l4?.sport, 40000);
    assert.equal(p.l4?.dport, 80);
    assert.equal(p.l4?.tcpFlags, 0x02);
    assert.equal(p.l4?.checksumOk, true);
  });

  it('carries options, TCP options and payload; a bad checksum is detected', () => {
    const pkt = ipv4({
      src: '10.0.0.1',
      dst: '10.0.0.2',
      options: Buffer.from([0x94, 0x04, 0, 0]), // router alert (copied)
      payload: tcp({
        sport: 1,
        dport: 2,
        flags: 'PA',
        options: Buffer.from([2, 4, 5, 0xb4]),
        payload: Buffer.from('hi'),
      }),
    });
    const p = parseFrame(ethernet({ payload: pkt }));
    assert.equal(p.ip?.headerLength, 24);
    assert.equal(p.l4?.payload.toString(), 'hi');
    assert.equal(p.l4?.checksumOk, true);
    const bad = parseFrame(
      ethernet({
        payload: ipv4({
          src: '10.0.0.1',
          dst: '10.0.0.2',
          payload: udp({ sport: 1, dport: 2, badChecksum: true }),
          badChecksum: true,
        }),
      }),
    );
    assert.equal(bad.ip?.checksumOk, false);
    assert.equal(bad.l4?.checksumOk, false);
  });

  it('writes malformed length fields when asked', () => {
    const pkt = ipv4({
      src: '10.0.0.1',
      dst: '10.0.0.2',
      ihl: 4,
      totalLength: 9999,
      payload: tcp({ sport: 1, dport: 2, doff: 3 }),
    });
    assert.equal((pkt[0] ?? 0) & 0x0f, 4);
    assert.equal(pkt.readUInt16BE(2), 9999);
    assert.equal((pkt[20 + 12] ?? 0) >> 4, 3);
    assert.equal(truncate(pkt, 25).length, 25);
  });

  it('fragments a datagram: offsets, MF, copied options only, payload intact', () => {
    const payload = Buffer.alloc(100, 7);
    const whole = ipv4({
      src: '10.0.0.1',
      dst: '10.0.0.2',
      id: 77,
      options: Buffer.from([0x07, 0x07, 0x04, 0, 0, 0, 0, 0x01]), // record route (not copied) + NOP
      payload: udp({ sport: 5000, dport: 53, payload }),
    });
    const frags = fragment4(whole, 48);
    assert.equal(frags.length, 3);
    const parsed = frags.map((f) => parseFrame(ethernet({ payload: f })).ip);
    assert.deepEqual(
      parsed.map((ip) => ip?.fragOffset),
      [0, 48, 96],
    );
    assert.deepEqual(
      parsed.map((ip) => ip?.more),
      [true, true, false],
    );
    assert.deepEqual(
      parsed.map((ip) => ip?.id),
      [77, 77, 77],
    );
    assert.deepEqual(
      parsed.map((ip) => ip?.headerLength),
      [28, 20, 20],
    );
    assert.ok(parsed.every((ip) => ip?.checksumOk));
    const body = Buffer.concat(frags.map((f) => f.subarray(((f[0] ?? 0) & 0xf) * 4)));
    assert.deepEqual(body, whole.subarray(28));
    assert.equal(parseFrame(ethernet({ payload: frags[0] ?? Buffer.alloc(0) })).l4?.dport, 53);
    assert.throws(() => fragment4(whole, 20), { code: 'ERR_PACKET_FRAGMENT' });
  });

  it('quotes the offending packet in an ICMP error', () => {
    const offending = ipv4({
      src: '10.0.0.1',
      dst: '10.0.0.2',
      payload: udp({ sport: 1234, dport: 53, payload: Buffer.alloc(30) }),
    });
    const err = ipv4({
      src: '10.0.0.9',
      dst: '10.0.0.1',
      payload: icmp4Error({ type: ICMP4.DEST_UNREACH, code: 3, quoted: offending }),
    });
    const p = parseFrame(ethernet({ payload: err }));
    assert.equal(p.l4?.icmpType, 3);
    assert.equal(p.l4?.checksumOk, true);
    assert.equal(p.l4?.payload.length, 28);
    assert.equal(p.l4?.payload.readUInt16BE(20), 1234);
    const echo = parseFrame(
      ethernet({ payload: ipv4({ src: '10.0.0.1', dst: '10.0.0.2', payload: icmp4Echo({ id: 42 }) }) }),
    );
    assert.equal(echo.l4?.icmpType, ICMP4.ECHO_REQUEST);
    assert.equal(echo.l4?.echoId, 42);
    assert.equal(echo.l4?.checksumOk, true);
  });

  it('builds SCTP with a valid CRC32c and ARP frames', () => {
    const p = parseFrame(
      ethernet({
        payload: ipv4({
          src: '10.0.0.1',
          dst: '10.0.0.2',
          payload: sctp({ sport: 9, dport: 3868, chunks: Buffer.alloc(20, 1) }),
        }),
      }),
    );
    assert.equal(p.l4?.dport, 3868);
    assert.equal(p.l4?.checksumOk, true);
    const a = ethernet({
      type: ETH_P.ARP,
      dst: 'ff:ff:ff:ff:ff:ff',
      payload: arp({ senderIp: '10.0.0.1', targetIp: '10.0.0.2' }),
    });
    assert.equal(a.length, 42);
    assert.equal(parseFrame(a).type, ETH_P.ARP);
  });
});

describe('IPv6', () => {
  it('walks extension headers to the L4 header with a valid checksum', () => {
    const pkt = ipv6({
      src: 'fd00::1',
      dst: 'fd00::2',
      ext: [{ type: 'hop' }, { type: 'routing' }, { type: 'dest', options: Buffer.from([1, 2, 0, 0]) }],
      payload: tcp({ sport: 1000, dport: 443 }),
    });
    const p = parseFrame(ethernet({ payload: pkt }));
    assert.equal(p.type, ETH_P.IPV6);
    assert.deepEqual(p.ip?.ext, [EXT.HOPOPTS, EXT.ROUTING, EXT.DSTOPTS]);
    assert.equal(p.ip?.proto, 6);
    assert.equal(p.l4?.dport, 443);
    assert.equal(p.l4?.checksumOk, true);
  });

  it('fragments after hop-by-hop and routing headers', () => {
    const whole = ipv6({
      src: 'fd00::1',
      dst: 'fd00::2',
      ext: [{ type: 'hop' }],
      payload: udp({ sport: 1, dport: 53, payload: Buffer.alloc(90, 3) }),
    });
    const frags = fragment6(whole, 40, 99);
    assert.equal(frags.length, 3);
    const parsed = frags.map((f) => parseFrame(ethernet({ payload: f })).ip);
    assert.deepEqual(
      parsed.map((ip) => ip?.ext),
      [
        [EXT.HOPOPTS, EXT.FRAGMENT],
        [EXT.HOPOPTS, EXT.FRAGMENT],
        [EXT.HOPOPTS, EXT.FRAGMENT],
      ],
    );
    assert.deepEqual(
      parsed.map((ip) => ip?.fragOffset),
      [0, 40, 80],
    );
    assert.deepEqual(
      parsed.map((ip) => ip?.more),
      [true, true, false],
    );
    assert.deepEqual(
      parsed.map((ip) => ip?.id),
      [99, 99, 99],
    );
    assert.equal(parseFrame(ethernet({ payload: frags[0] ?? Buffer.alloc(0) })).l4?.dport, 53);
    const body = Buffer.concat(frags.map((f) => f.subarray(40 + 8 + 8)));
    assert.deepEqual(body, whole.subarray(48));
  });

  it('builds ICMPv6 echo, errors and neighbour discovery with valid checksums', () => {
    const echo = parseFrame(
      ethernet({
        payload: ipv6({ src: 'fd00::1', dst: 'fd00::2', payload: icmp6Echo({ id: 7, reply: true }) }),
      }),
    );
    assert.equal(echo.l4?.icmpType, ICMP6.ECHO_REPLY);
    assert.equal(echo.l4?.echoId, 7);
    assert.equal(echo.l4?.checksumOk, true);
    const ns = parseFrame(
      ethernet({
        payload: ipv6({
          src: 'fd00::1',
          dst: 'ff02::1:ff00:2',
          hopLimit: 255,
          payload: ndpNeighborSolicit('fd00::2'),
        }),
      }),
    );
    assert.equal(ns.l4?.icmpType, ICMP6.NEIGH_SOLICIT);
    assert.equal(ns.l4?.checksumOk, true);
    const quoted = ipv6({ src: 'fd00::1', dst: 'fd00::2', payload: tcp({ sport: 5, dport: 6 }) });
    const big = parseFrame(
      ethernet({
        payload: ipv6({
          src: 'fd00::9',
          dst: 'fd00::1',
          payload: icmp6Error({ type: ICMP6.PKT_TOOBIG, mtu: 1280, quoted }),
        }),
      }),
    );
    assert.equal(big.l4?.checksumOk, true);
    assert.equal(big.l4?.payload.length, 60);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseListen } from './listen.js';

describe('ui: --listen', () => {
  it('takes loopback addresses, v4 and v6, and port 0', () => {
    assert.deepEqual(parseListen('127.0.0.1:12000'), { host: '127.0.0.1', port: 12000 });
    assert.deepEqual(parseListen('127.0.0.2:0'), { host: '127.0.0.2', port: 0 });
    assert.deepEqual(parseListen('[::1]:8080'), { host: '::1', port: 8080 });
    assert.deepEqual(parseListen('localhost:9'), { host: '127.0.0.1', port: 9 });
  });

  it('refuses anything that is not loopback, and malformed values', () => {
    for (const bad of [
      '0.0.0.0:12000',
      '10.0.0.1:80',
      '[::]:80',
      'example.com:80',
      '127.0.0.1',
      '127.0.0.1:70000',
      ':80',
    ])
      assert.throws(() => parseListen(bad), { code: 'ERR_UI_LISTEN' }, bad);
  });
});

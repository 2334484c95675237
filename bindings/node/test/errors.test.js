// SPDX-License-Identifier: MIT
// Errors: Error objects with code = the errno name; bad arguments are
// TypeError / RangeError; nothing crashes.
'use strict';
const test = require('node:test');
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { capshm, DIR, WANT_SHARED, runFixture } = require('./helper');

const opts = { shared: WANT_SHARED };

test('ENOENT: a name that does not exist; a directory that does not exist', () => {
  const missing = 'a'.repeat(26);
  assert.throws(() => capshm.open(missing, opts), (e) => {
    assert.ok(e instanceof Error);
    assert.strictEqual(e.code, 'ENOENT');
    assert.strictEqual(e.errno, -2);
    assert.strictEqual(e.syscall, 'open');
    assert.strictEqual(e.path, path.join(path.resolve(DIR), missing));
    return true;
  });
  assert.throws(() => capshm.create(10, Object.assign({ dir: '/nonexistent-capshm' }, opts)),
                { code: 'ENOENT', syscall: 'open' });
  assert.throws(() => capshm.stats({ dir: '/nonexistent-capshm' }), { code: 'ENOENT' });
});

test('EACCES: another uid may not open a 0600 region', { skip: process.getuid() !== 0 }, async () => {
  const r = capshm.create(4096, opts);
  try {
    const res = await runFixture('open-as', { CAPSHM_NAME: r.name },
                                 { argvPrefix: ['setpriv', '--reuid', '4001', '--regid', '4001', '--clear-groups', '--'] });
    assert.strictEqual(res.stdout.trim(), 'EACCES', res.stderr);
    fs.chmodSync(r.path, 0o644);
    const ro = await runFixture('open-as', { CAPSHM_NAME: r.name, READONLY: '1' },
                                { argvPrefix: ['setpriv', '--reuid', '4001', '--regid', '4001', '--clear-groups', '--'] });
    assert.strictEqual(ro.stdout.trim(), 'ok', ro.stderr);
  } finally {
    r.close();
  }
});

test('EBADF-free misuse: open(.new-like names) and files that are not regions', () => {
  assert.throws(() => capshm.open('.new', opts), TypeError);
  assert.throws(() => capshm.open('a/b', opts), TypeError);
  assert.throws(() => capshm.open('', opts), TypeError);
  assert.throws(() => capshm.open('a\0b', opts), TypeError);
});

test('bad arguments: TypeError and RangeError', () => {
  assert.throws(() => capshm.create('10'), TypeError);
  assert.throws(() => capshm.create(), TypeError);
  assert.throws(() => capshm.create(0), RangeError);
  assert.throws(() => capshm.create(-1), RangeError);
  assert.throws(() => capshm.create(1.5), RangeError);
  assert.throws(() => capshm.create(2 ** 60), RangeError);
  assert.throws(() => capshm.create(10, 'x'), TypeError);
  assert.throws(() => capshm.create(10, { mode: 0o10000 }), RangeError);
  assert.throws(() => capshm.create(10, { mode: '600' }), TypeError);
  assert.throws(() => capshm.create(10, { dir: 5 }), TypeError);
  assert.throws(() => capshm.create(10, { shared: 'yes' }), TypeError);
  assert.throws(() => capshm.open(5), TypeError);
  assert.throws(() => capshm.open('x', 5), TypeError);
});

test('the native layer checks its arguments too (no crash on a direct call)', () => {
  const native = require(path.join(require('./helper').PKG, 'build', 'Release', 'capshm.node'));
  assert.throws(() => native.close({}, null), TypeError);
  assert.throws(() => native.getxattr(5, 'user.x'), TypeError);
  assert.throws(() => native.wait(new Int32Array(1), 5, 0, 0), RangeError);
  assert.throws(() => native.wait(new Uint8Array(4), 0, 0, 0), TypeError);
  assert.throws(() => native.create('/tmp', -1, 0o600, true), RangeError);
  assert.throws(() => native.open(DIR), TypeError);
});

test('EDQUOT and ENOSPC come back as codes (CAPSHM_QUOTA_DIR: a mount with quota=1M)',
     { skip: !process.env.CAPSHM_QUOTA_DIR }, () => {
  const dir = process.env.CAPSHM_QUOTA_DIR;
  const r = capshm.create(512 * 1024, Object.assign({ dir }, opts));
  try {
    assert.throws(() => capshm.create(1024 * 1024, Object.assign({ dir }, opts)),
                  { code: 'EDQUOT', syscall: 'ftruncate' });
  } finally {
    r.close();
  }
});

// SPDX-License-Identifier: MIT
// Regions: create, open, views, xattrs, close, lifetime.
'use strict';
const test = require('node:test');
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { capshm, DIR, DATAPATH, WANT_SHARED, runFixture, firstLine, until, exists } = require('./helper');

const opts = { shared: WANT_SHARED };

test('create: a fresh name, the path, the size, a mapping of that size', () => {
  const r = capshm.create(8192, opts);
  try {
    assert.match(r.name, /^[a-z2-7]{26}$/);
    assert.strictEqual(r.path, path.join(path.resolve(DIR), r.name));
    assert.strictEqual(r.size, 8192);
    assert.strictEqual(r.readOnly, false);
    assert.strictEqual(r.shared, WANT_SHARED);
    assert.ok(r.buffer instanceof (WANT_SHARED ? SharedArrayBuffer : ArrayBuffer));
    assert.strictEqual(r.buffer.byteLength, 8192);
    const st = fs.statSync(r.path);
    assert.strictEqual(st.size, 8192);
    assert.strictEqual(st.mode & 0o777, 0o600 & ~process.umask());
  } finally {
    r.close();
  }
});

test('create: mode, and bigint sizes', () => {
  const old = process.umask(0);
  try {
    const r = capshm.create(10n, Object.assign({ mode: 0o640 }, opts));
    assert.strictEqual(fs.statSync(r.path).mode & 0o777, 0o640);
    assert.strictEqual(r.size, 10);
    r.close();
  } finally {
    process.umask(old);
  }
});

test('two mappings of one region see the same bytes; fs sees them too', () => {
  const a = capshm.create(4096, opts);
  const b = capshm.open(a.name, opts);
  try {
    a.view(Uint8Array).set([1, 2, 3], 10);
    assert.deepStrictEqual([...b.view(Uint8Array, 10, 3)], [1, 2, 3]);
    b.view(Float64Array)[100] = 2.5;
    assert.strictEqual(a.view(Float64Array)[100], 2.5);
    const buf = fs.readFileSync(a.path);
    assert.deepStrictEqual([...buf.subarray(10, 13)], [1, 2, 3]);
    assert.strictEqual(new DataView(b.buffer).getUint8(12), 3);
  } finally {
    a.close();
    b.close();
  }
});

test('view(): default, offsets, lengths, DataView, bad arguments', () => {
  const r = capshm.create(4096, opts);
  try {
    assert.strictEqual(r.view().length, 4096);
    assert.ok(r.view() instanceof Uint8Array);
    assert.strictEqual(r.view(Int32Array, 8).length, 1022);
    assert.strictEqual(r.view(BigInt64Array, 8, 4).length, 4);
    assert.strictEqual(r.view(DataView, 100, 10).byteLength, 10);
    assert.throws(() => r.view(Int32Array, 2), RangeError);
    assert.throws(() => r.view(Int32Array, 0, 2000), RangeError);
    assert.throws(() => r.view(Uint8Array, 5000), RangeError);
    assert.throws(() => r.view(Object), TypeError);
    assert.throws(() => r.view(Uint8Array, -1), RangeError);
  } finally {
    r.close();
  }
});

test('close(): idempotent, releases the region, later use throws or sees nothing, never crashes', async () => {
  const r = capshm.create(4096, opts);
  const v = r.view(Int32Array);
  v[0] = 5;
  r.close();
  r.close();
  assert.strictEqual(r.closed, true);
  assert.throws(() => r.view(), { code: 'ERR_CAPSHM_CLOSED' });
  assert.throws(() => r.pin(), { code: 'ERR_CAPSHM_CLOSED' });
  if (WANT_SHARED) {
    // A SharedArrayBuffer cannot be detached: its pages became private zeros.
    assert.strictEqual(v.length, 1024);
    assert.strictEqual(v[0], 0);
    v[0] = 1;
  } else {
    // The ArrayBuffer was detached.
    assert.strictEqual(r.buffer.byteLength, 0);
    assert.strictEqual(v.length, 0);
    assert.strictEqual(v[0], undefined);
    v[0] = 1;
    assert.throws(() => new Int32Array(r.buffer, 0, 1), TypeError);
  }
  // Nothing holds it any more: it goes after the linger time.
  await until(() => !exists(r.name), 10000, 'the closed region to go');
});

test('pin keeps a region without holders; unpin lets it go', async () => {
  const r = capshm.create(4096, Object.assign({ pin: true }, opts));
  const name = r.name;
  r.view()[0] = 77;
  r.close();
  const linger = capshm.stats().linger;
  await new Promise((res) => setTimeout(res, (linger + 1) * 1000));
  assert.ok(exists(name), 'a pinned region outlives its holders');
  const again = capshm.open(name, opts);
  assert.strictEqual(again.view()[0], 77);
  again.unpin();
  again.close();
  await until(() => !exists(name), 10000, 'the unpinned region to go');
});

test('seal: EBUSY while writable mappings exist; then immutable', () => {
  const r = capshm.create(4096, opts);
  const name = r.name;
  r.view()[0] = 1;
  assert.throws(() => r.seal(), { code: 'EBUSY', syscall: 'fsetxattr' });
  const ro = capshm.open(name, Object.assign({ readOnly: true }, opts));
  r.close();
  ro.seal();
  assert.throws(() => capshm.open(name, opts), (e) => ['EPERM', 'EACCES', 'EROFS'].includes(e.code));
  assert.strictEqual(ro.view()[0], 1);
  ro.close();
  fs.unlinkSync(path.join(DIR, name));
});

test('roName: a name that opens the same bytes read-only (passthrough); EOPNOTSUPP on cache', () => {
  const r = capshm.create(4096, opts);
  try {
    if (DATAPATH === 'cache') {
      assert.throws(() => r.roName(), { code: 'EOPNOTSUPP' });
      return;
    }
    const ro = r.roName();
    assert.match(ro, /^[a-z2-7]{26}$/);
    assert.notStrictEqual(ro, r.name);
    const reader = capshm.open(ro, Object.assign({ readOnly: true }, opts));
    r.view()[3] = 33;
    assert.strictEqual(reader.view()[3], 33);
    reader.close();
    assert.throws(() => capshm.open(ro, opts), (e) => ['EACCES', 'EPERM'].includes(e.code));
  } finally {
    r.close();
  }
});

test('stats(): the mount\'s .stats', () => {
  const s = capshm.stats();
  assert.strictEqual(s.datapath, DATAPATH);
  assert.strictEqual(typeof s.regions, 'number');
  assert.deepStrictEqual(capshm.stats({ dir: DIR }).datapath, DATAPATH);
});

test('a forgotten region is unmapped by the finalizer once collected', async () => {
  let child;
  const done = runFixture('forget', {}, { nodeArgs: ['--expose-gc'], onSpawn: (c) => { child = c; } });
  try {
    const name = await firstLine(child);
    assert.match(name, /^[a-z2-7]{26}$/);
    // The process lives on, but no longer holds the region.
    await until(() => !exists(name), 15000, 'the collected region to go');
  } finally {
    child.stdin.end();
    const res = await done;
    assert.strictEqual(res.code, 0, res.stderr);
  }
});

test('a SIGKILLed process holds nothing: its region goes after the linger time', async () => {
  let child;
  const done = runFixture('holder', {}, { onSpawn: (c) => { child = c; } });
  const name = await firstLine(child);
  assert.ok(exists(name));
  const r = capshm.open(name, opts);
  assert.strictEqual(r.view()[10], 7);
  r.close();
  child.kill('SIGKILL');
  const res = await done;
  assert.strictEqual(res.signal, 'SIGKILL');
  await until(() => !exists(name), 10000, 'the killed process\'s region to go');
});

test('worker_threads share the SharedArrayBuffer (Atomics.wait within a process)', { skip: !WANT_SHARED }, async () => {
  const { Worker } = require('worker_threads');
  const r = capshm.create(4096, opts);
  try {
    const a = r.view(Int32Array);
    const w = new Worker(`
      const { workerData } = require('worker_threads');
      const a = new Int32Array(workerData);
      Atomics.store(a, 1, 1);
      Atomics.notify(a, 1);
      Atomics.wait(a, 0, 0, 10000);
      Atomics.store(a, 2, 99);
    `, { eval: true, workerData: r.buffer });
    const exited = new Promise((res) => w.on('exit', res));
    while (Atomics.load(a, 1) === 0) Atomics.wait(a, 1, 0, 100);
    Atomics.store(a, 0, 1);
    const end = Date.now() + 10000;
    while (Atomics.load(a, 2) !== 99 && Date.now() < end) {
      Atomics.notify(a, 0);
      await new Promise((res) => setTimeout(res, 5));
    }
    assert.strictEqual(await exited, 0);
    assert.strictEqual(Atomics.load(a, 2), 99);
  } finally {
    r.close();
  }
});

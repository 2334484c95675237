// SPDX-License-Identifier: MIT
// Read-only opens: coherent with the writers, and a JavaScript write can
// neither crash the process nor reach the region.
'use strict';
const test = require('node:test');
const assert = require('assert');
const fs = require('fs');
const { capshm, DATAPATH, WANT_SHARED, runFixture } = require('./helper');

const opts = { shared: WANT_SHARED };

test('a read-only open sees the writers\' bytes as they change', () => {
  const w = capshm.create(8192, opts);
  const r = capshm.open(w.name, Object.assign({ readOnly: true }, opts));
  try {
    assert.strictEqual(r.readOnly, true);
    const wv = w.view(Int32Array), rv = r.view(Int32Array);
    for (let i = 0; i < 100; i++) {
      Atomics.store(wv, i, i * 3);
      assert.strictEqual(Atomics.load(rv, i), i * 3);
    }
    wv[2000] = 5;
    assert.strictEqual(rv[2000], 5, 'the second page too');
  } finally {
    r.close();
    w.close();
  }
});

test('writing through a read-only region: no crash, and the region does not change', async () => {
  const w = capshm.create(4096, opts);
  try {
    w.view().fill(1);
    const res = await runFixture('ro-writer', { CAPSHM_NAME: w.name });
    assert.strictEqual(res.signal, null, 'the writer was not killed by a signal');
    assert.strictEqual(res.code, 0, res.stderr);
    const out = JSON.parse(res.stdout);
    assert.deepStrictEqual(out, { readOnly: true, before: 1, after: 42 });
    // Neither this mapping, nor the file, nor a fresh mapping changed.
    assert.ok(w.view().every((b) => b === 1));
    assert.ok(fs.readFileSync(w.path).every((b) => b === 1));
    const again = capshm.open(w.name, opts);
    assert.ok(again.view().every((b) => b === 1));
    again.close();
  } finally {
    w.close();
  }
});

test('read-only names (passthrough) open read-only only', { skip: DATAPATH !== 'passthrough' }, async () => {
  const w = capshm.create(4096, opts);
  try {
    w.view().fill(1);
    const ro = w.roName();
    const res = await runFixture('ro-writer', { CAPSHM_NAME: ro });
    assert.strictEqual(res.code, 0, res.stderr);
    assert.ok(w.view().every((b) => b === 1));
    const rw = await runFixture('open-as', { CAPSHM_NAME: ro });
    assert.ok(['EACCES', 'EPERM'].includes(rw.stdout.trim()), rw.stdout);
  } finally {
    w.close();
  }
});

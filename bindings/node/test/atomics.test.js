// SPDX-License-Identifier: MIT
// Atomics on a region between unrelated processes.
'use strict';
const test = require('node:test');
const assert = require('assert');
const { capshm, WANT_SHARED, runFixture } = require('./helper');

test('two processes x 100,000 Atomics.add on one region = 200,000', async () => {
  const r = capshm.create(4096, { shared: WANT_SHARED });
  try {
    const a = r.view(Int32Array);
    // The name goes through the environment, never the command line.
    const env = { CAPSHM_NAME: r.name, PROCS: '2', COUNT: '100000' };
    const res = await Promise.all([runFixture('adder', env), runFixture('adder', env)]);
    for (const x of res) assert.strictEqual(x.code, 0, x.stderr);
    assert.strictEqual(Atomics.load(a, 1), 2);
    assert.strictEqual(Atomics.load(a, 0), 200000);
  } finally {
    r.close();
  }
});

test('compareExchange as a cross-process lock word', async () => {
  const r = capshm.create(4096, { shared: WANT_SHARED });
  try {
    const a = r.view(Int32Array);
    assert.strictEqual(Atomics.compareExchange(a, 5, 0, 1), 0);
    const res = await runFixture('adder', { CAPSHM_NAME: r.name, PROCS: '1', COUNT: '10' });
    assert.strictEqual(res.code, 0, res.stderr);
    assert.strictEqual(Atomics.compareExchange(a, 5, 0, 1), 1, 'the lock is still held');
    assert.strictEqual(Atomics.load(a, 0), 10);
  } finally {
    r.close();
  }
});

// SPDX-License-Identifier: MIT
// capshm.wait / waitAsync / notify: futexes on the shared pages, between
// processes, also across mount namespaces.
'use strict';
const test = require('node:test');
const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { capshm, DIR, WANT_SHARED, runFixture, firstLine, until, inFutexWait } = require('./helper');

const opts = { shared: WANT_SHARED };

test('not-equal, timed-out, and the timeout is honoured', () => {
  const r = capshm.create(4096, opts);
  try {
    const a = r.view(Int32Array);
    a[3] = 7;
    assert.strictEqual(capshm.wait(a, 3, 6, 1000), 'not-equal');
    assert.strictEqual(capshm.wait(a, 3, 7, 0), 'timed-out');
    assert.strictEqual(capshm.wait(a, 3, 7, -5), 'timed-out');
    const t0 = process.hrtime.bigint();
    assert.strictEqual(capshm.wait(a, 3, 7, 100), 'timed-out');
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    assert.ok(ms >= 95 && ms < 2000, `waited ${ms} ms`);
    assert.strictEqual(capshm.notify(a, 3), 0);
    a[4] = -1;
    assert.strictEqual(capshm.wait(a, 4, 0xffffffff, 0), 'timed-out', 'expected is taken as int32');
  } finally {
    r.close();
  }
});

test('bad arguments are TypeError / RangeError', () => {
  const r = capshm.create(4096, opts);
  try {
    const a = r.view(Int32Array);
    assert.throws(() => capshm.wait(r.view(Uint32Array), 0, 0, 0), TypeError);
    assert.throws(() => capshm.wait([0], 0, 0, 0), TypeError);
    assert.throws(() => capshm.wait(a, 1024, 0, 0), RangeError);
    assert.throws(() => capshm.wait(a, -1, 0, 0), RangeError);
    assert.throws(() => capshm.wait(a, 0.5, 0, 0), RangeError);
    assert.throws(() => capshm.wait(a, '0', 0, 0), TypeError);
    assert.throws(() => capshm.wait(a, 0, 'x', 0), TypeError);
    assert.throws(() => capshm.notify(new Float64Array(2), 0), TypeError);
    assert.throws(() => capshm.notify(a, 5000), RangeError);
    assert.throws(() => capshm.waitAsync(a, 5000, 0), RangeError);
  } finally {
    r.close();
  }
});

async function wakeFromAnotherProcess(waiterEnv, notifierArgs = {}) {
  const r = capshm.create(4096, opts);
  try {
    const a = r.view(Int32Array);
    let child;
    const done = runFixture('waiter', Object.assign({ CAPSHM_NAME: r.name, INDEX: '2', EXPECTED: '0',
                                                      TIMEOUT: '20000' }, waiterEnv),
                            { onSpawn: (c) => { child = c; } });
    assert.strictEqual(await firstLine(child), 'waiting');
    // A blocking wait: its main thread sleeps in FUTEX_WAIT.  (waitAsync
    // waits on another thread: the notifiers below repeat until one woke.)
    if (!waiterEnv.ASYNC) await until(() => inFutexWait(child.pid), 10000, 'the child to block in FUTEX_WAIT');
    const t0 = Date.now();
    if (notifierArgs.fixture) {
      const n = await runFixture('notifier', Object.assign({ CAPSHM_NAME: r.name, INDEX: '2' },
                                                           notifierArgs.env), notifierArgs.opts);
      assert.strictEqual(n.code, 0, n.stderr);
      assert.strictEqual(n.stdout.trim(), '1');
    } else if (!waiterEnv.ASYNC) {
      Atomics.store(a, 2, 1);
      assert.strictEqual(capshm.notify(a, 2, 1), 1);
    } else {
      // Not knowing when the waiter's thread enters FUTEX_WAIT, leave the
      // value alone (a store first could make it 'not-equal') and notify
      // until it was woken.
      await new Promise((res) => setTimeout(res, 200));
      let woken = 0;
      while (woken === 0 && Date.now() - t0 < 10000) {
        woken = capshm.notify(a, 2, 1);
        if (!woken) await new Promise((res) => setTimeout(res, 10));
      }
      assert.strictEqual(woken, 1);
    }
    const res = await done;
    assert.strictEqual(res.code, 0, res.stderr);
    assert.ok(Date.now() - t0 < 10000);
    return res.stdout.split('\n')[1];
  } finally {
    r.close();
  }
}

test('wait in one process, notify from another', async () => {
  assert.strictEqual(await wakeFromAnotherProcess({}), 'ok');
});

test('wait in one process, notify from a third process', async () => {
  assert.strictEqual(await wakeFromAnotherProcess({}, { fixture: true }), 'ok');
});

test('notify from a process in another mount namespace, through a bind mount', async () => {
  // As a container sees it: the mount is bound elsewhere, and the original
  // mountpoint is gone from the notifier's namespace.
  const bind = fs.mkdtempSync(path.join(os.tmpdir(), 'capshm-bind-'));
  try {
    const script = 'mount --bind "$CAPSHM_DIR" "$BIND" && umount -l "$CAPSHM_DIR" && ' +
                   'test ! -e "$CAPSHM_DIR/.stats" && CAPSHM_DIR="$BIND" exec "$@"';
    const out = await wakeFromAnotherProcess({}, {
      fixture: true,
      env: { BIND: bind },
      opts: { argvPrefix: ['unshare', '-m', '--propagation', 'private', 'sh', '-c', script, 'sh'] },
    });
    assert.strictEqual(out, 'ok');
  } finally {
    fs.rmdirSync(bind);
  }
});

test('waitAsync in another process does not block its event loop; woken by notify', async () => {
  const out = await wakeFromAnotherProcess({ ASYNC: '1' });
  const [res, ticks] = out.split(' ');
  assert.strictEqual(res, 'ok');
  assert.ok(Number(ticks) > 5, `the waiter's timers ran ${ticks} times while it waited`);
});

test('waitAsync: not-equal, timed-out, and woken from another process', async () => {
  const r = capshm.create(4096, opts);
  try {
    const a = r.view(Int32Array);
    assert.strictEqual(await capshm.waitAsync(a, 0, 1), 'not-equal');
    assert.strictEqual(await capshm.waitAsync(a, 0, 0, 0), 'timed-out');
    let ticks = 0;
    const t = setInterval(() => { ticks++; }, 5);
    assert.strictEqual(await capshm.waitAsync(a, 0, 0, 100), 'timed-out');
    clearInterval(t);
    assert.ok(ticks > 5, 'the event loop kept running');
    const p = capshm.waitAsync(a, 0, 0, 20000);
    const n = await runFixture('notifier', { CAPSHM_NAME: r.name, INDEX: '0' });
    assert.strictEqual(n.code, 0, n.stderr);
    assert.strictEqual(n.stdout.trim(), '1');
    assert.strictEqual(await p, 'ok');
  } finally {
    r.close();
  }
});

test('many pending waitAsync calls do not starve the libuv threadpool', async () => {
  const r = capshm.create(4096, opts);
  try {
    const a = r.view(Int32Array);
    const pending = [];
    for (let i = 0; i < 16; i++) pending.push(capshm.waitAsync(a, 0, 0, 20000));
    // fs work still gets threads.
    await fs.promises.readFile(path.join(DIR, '.stats'));
    await until(() => { Atomics.store(a, 0, 1); return true; });
    let woken = 0;
    const end = Date.now() + 10000;
    while (woken < 16 && Date.now() < end) {
      woken += capshm.notify(a, 0);
      await new Promise((res) => setTimeout(res, 10));
    }
    assert.deepStrictEqual(await Promise.all(pending), new Array(16).fill('ok'));
  } finally {
    r.close();
  }
});

test('notify returns how many it woke, up to count', async () => {
  const r = capshm.create(4096, opts);
  const kids = [];
  try {
    const a = r.view(Int32Array);
    const done = [];
    for (let i = 0; i < 3; i++) {
      done.push(runFixture('waiter', { CAPSHM_NAME: r.name, INDEX: '1', EXPECTED: '0', TIMEOUT: '20000' },
                           { onSpawn: (c) => kids.push(c) }));
    }
    for (const c of kids) assert.strictEqual(await firstLine(c), 'waiting');
    await until(() => kids.every((c) => inFutexWait(c.pid)), 10000, 'three waiters');
    Atomics.store(a, 1, 1);
    assert.strictEqual(capshm.notify(a, 1, 0), 0);
    assert.strictEqual(capshm.notify(a, 1, 2), 2);
    assert.strictEqual(capshm.notify(a, 1), 1);
    for (const res of await Promise.all(done)) {
      assert.strictEqual(res.code, 0, res.stderr);
      assert.strictEqual(res.stdout, 'waiting\nok\n');
    }
  } finally {
    for (const c of kids) c.kill();
    r.close();
  }
});

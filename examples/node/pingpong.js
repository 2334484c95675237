#!/usr/bin/env node
// SPDX-License-Identifier: MIT
// pingpong.js — a parent and an unrelated process share an Int32Array by
// name and take turns, blocking in capshm.wait until the other one's
// capshm.notify (futexes on the shared page: they work between processes,
// where Atomics.wait/notify do not).
//
//   node pingpong.js [ROUNDS]        create a region, start the partner, play
//   CAPSHM_NAME=NAME node pingpong.js   be the partner of a region
//
// The partner learns the region's name from its environment (never from
// its command line: /proc/PID/cmdline is readable by everyone).  Started
// with --no-spawn, the first process prints the name and waits for a
// partner started by hand, e.g. from another terminal or a container that
// bind-mounts the capshm mount.
'use strict';
const capshm = require('capshm');
const { spawn } = require('child_process');

const TURN = 0, ROUNDS = 1, HITS = 2;   // Int32 slots of the region

// Wait until a[TURN] === me (re-checking: 'ok' may be spurious).
function awaitTurn(a, me) {
  for (;;) {
    const t = Atomics.load(a, TURN);
    if (t === me || t === -1) return t;
    if (capshm.wait(a, TURN, t, 10000) === 'timed-out') throw new Error('the partner went quiet');
  }
}

function play(a, me, other) {
  const rounds = Atomics.load(a, ROUNDS);
  for (let i = 0; i < rounds; i++) {
    if (awaitTurn(a, me) === -1) return;
    Atomics.add(a, HITS, 1);
    Atomics.store(a, TURN, other);
    capshm.notify(a, TURN);
  }
}

if (process.env.CAPSHM_NAME) {
  // The partner: plays 1 to the creator's 0.
  const region = capshm.open(process.env.CAPSHM_NAME);
  const a = region.view(Int32Array);
  play(a, 1, 0);
  region.close();
} else {
  const rounds = Number(process.argv[2] || 10000);
  const region = capshm.create(4096);
  const a = region.view(Int32Array);
  Atomics.store(a, ROUNDS, rounds);
  Atomics.store(a, TURN, 1);               // the partner serves first
  console.log(region.name);
  const t0 = process.hrtime.bigint();
  let child = null;
  if (!process.argv.includes('--no-spawn')) {
    child = spawn(process.execPath, [__filename], {
      env: Object.assign({}, process.env, { CAPSHM_NAME: region.name }),
      stdio: 'inherit',
    });
  }
  play(a, 0, 1);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const hits = Atomics.load(a, HITS);
  console.log(`${hits} hits in ${ms.toFixed(0)} ms (${(ms * 1000 / hits).toFixed(1)} us per hit)`);
  const finish = () => {
    region.close();
    if (hits !== 2 * rounds) {
      console.error(`pingpong.js: expected ${2 * rounds} hits`);
      process.exitCode = 1;
    }
  };
  if (child) child.on('exit', (code) => { if (code) process.exitCode = 1; finish(); });
  else finish();
}

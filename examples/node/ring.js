#!/usr/bin/env node
// SPDX-License-Identifier: MIT
// ring.js — a ring buffer in a capshm region between one producer and
// several consumer processes, with Atomics and cross-process capshm.wait /
// capshm.notify.
//
//   node ring.js [ITEMS] [CONSUMERS]   create the ring, start the consumers
//                                      (CAPSHM_NAME in their environment),
//                                      produce ITEMS numbers 1..ITEMS
//   CAPSHM_NAME=NAME node ring.js      a consumer: sums what it takes
//
// A bounded multi-consumer queue (each slot has a sequence number, as in
// Dmitry Vyukov's MPMC queue): slot i of position p is free for the producer
// when seq[i] === p, holds an item when seq[i] === p + 1, and a consumer
// that takes it sets seq[i] = p + SLOTS.  Whoever finds a slot not ready
// blocks with capshm.wait on its sequence word; whoever changes the word
// calls capshm.notify on it.  An item 0 tells one consumer to stop.
'use strict';
const capshm = require('capshm');
const { spawn } = require('child_process');

const SLOTS = 64;
const READ = 0;               // next position to consume (claimed with compareExchange)
const SEQ = 16;               // SLOTS sequence words
const DATA = SEQ + SLOTS;     // SLOTS items
const WORDS = DATA + SLOTS;

function waitChange(a, i, seen) {
  capshm.wait(a, i, seen, 1000);   // bounded: a lost producer does not hang us forever
}

function produce(a, items, consumers) {
  let pos = 0;
  const put = (v) => {
    const s = SEQ + (pos % SLOTS);
    for (let seq; (seq = Atomics.load(a, s)) !== pos;) waitChange(a, s, seq);
    a[DATA + (pos % SLOTS)] = v;
    Atomics.store(a, s, pos + 1);     // publish
    capshm.notify(a, s);
    pos++;
  };
  for (let v = 1; v <= items; v++) put(v);
  for (let c = 0; c < consumers; c++) put(0);
}

function consume(a) {
  let sum = 0, count = 0;
  for (;;) {
    const pos = Atomics.load(a, READ);
    const s = SEQ + (pos % SLOTS);
    const seq = Atomics.load(a, s);
    if (seq === pos + 1) {
      if (Atomics.compareExchange(a, READ, pos, pos + 1) !== pos) continue; // another took it
      const v = a[DATA + (pos % SLOTS)];
      Atomics.store(a, s, pos + SLOTS);  // free the slot for the next lap
      capshm.notify(a, s);
      if (v === 0) return { sum, count };
      sum += v;
      count++;
    } else if (seq === pos) {
      waitChange(a, s, seq);             // empty: wait for the producer
    }
    // else: another consumer is between its claim and its release; retry
  }
}

if (process.env.CAPSHM_NAME) {
  const region = capshm.open(process.env.CAPSHM_NAME);
  const r = consume(region.view(Int32Array, 0, WORDS));
  console.log(JSON.stringify(r));
  region.close();
} else {
  const items = Number(process.argv[2] || 100000);
  const consumers = Number(process.argv[3] || 3);
  const region = capshm.create(WORDS * 4);
  const a = region.view(Int32Array);
  for (let i = 0; i < SLOTS; i++) a[SEQ + i] = i;
  const results = [];
  const exits = [];
  for (let c = 0; c < consumers; c++) {
    const child = spawn(process.execPath, [__filename], {
      env: Object.assign({}, process.env, { CAPSHM_NAME: region.name }),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    exits.push(new Promise((res) => child.on('close', (code) => { results.push(out && JSON.parse(out)); res(code); })));
  }
  const t0 = Date.now();
  produce(a, items, consumers);
  Promise.all(exits).then((codes) => {
    region.close();
    const sum = results.reduce((s, r) => s + r.sum, 0);
    const count = results.reduce((s, r) => s + r.count, 0);
    const want = items * (items + 1) / 2;
    console.log(`${count} items through ${SLOTS} slots to ${consumers} consumers ` +
                `(${results.map((r) => r.count).join(' + ')}) in ${Date.now() - t0} ms; ` +
                `sum ${sum === want ? 'ok' : 'WRONG'}`);
    if (codes.some((c) => c !== 0) || sum !== want || count !== items) process.exitCode = 1;
  });
}

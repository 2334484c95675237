#!/usr/bin/env node
// SPDX-License-Identifier: MIT
// share.js — two processes share a capshm region from Node.js.
//
//   terminal 1:  node share.js create          prints the region's name, waits for a reply
//   terminal 2:  node share.js attach          reads NAME from stdin (or
//                                             $CAPSHM_NAME), reads the message,
//                                             writes a reply
//
// The name is the key to the region: it travels on stdin or in the
// environment, never on the command line (/proc/PID/cmdline is public).
//
// Uses the capshm package (bindings/node: `npm install` in this directory,
// or NODE_PATH pointing at a node_modules that has it): the region is mapped
// into this process and read and written as a Uint8Array.  The mount is
// $CAPSHM_DIR, else /run/capshm.  Layout (shared by every example, so the C,
// Python and shell versions talk to this one): offset 0 the creator's
// message, offset 2048 the reply, offset 4095 set to 1 once the reply is
// complete.
'use strict';
const capshm = require('capshm');

const SIZE = 4096, MSG = 0, REPLY = 2048, DONE = 4095;

// The NUL-terminated string at offset `off`.
function textAt(bytes, off) {
  let end = bytes.indexOf(0, off);
  if (end < 0 || end > DONE) end = DONE;
  return Buffer.from(bytes.buffer, bytes.byteOffset + off, end - off).toString('utf8');
}

function writeAt(bytes, off, text) {
  const b = Buffer.from(text + '\0');
  bytes.set(b.subarray(0, DONE - off), off);
}

function create() {
  // Mint a name, create the region, size it, map it: the mapping holds it.
  const region = capshm.create(SIZE);
  const bytes = region.view(Uint8Array);
  writeAt(bytes, MSG, `hello from Node, pid ${process.pid}`);
  console.log(region.name); // the name is the capability: pass it on

  let tries = 0;
  const timer = setInterval(() => {  // wait up to a minute for the reply
    if (Atomics.load(bytes, DONE) === 1) {
      clearInterval(timer);
      console.log('reply: ' + textAt(bytes, REPLY));
      region.close();
    } else if (++tries > 600) {
      clearInterval(timer);
      console.error('share.js: no reply within 60 s');
      process.exitCode = 1;
    }
  }, 100);
}

function attach(name) {
  const region = capshm.open(name);
  const bytes = region.view(Uint8Array);
  console.log('message: ' + textAt(bytes, MSG));
  writeAt(bytes, REPLY, `thanks from Node, pid ${process.pid}`);
  Atomics.store(bytes, DONE, 1); // last: the reply is complete
  region.close();
}

const verb = process.argv[2];
try {
  if (verb === 'create' && process.argv.length === 3) {
    create();
  } else if (verb === 'attach' && process.argv.length === 3) {
    let name = process.env.CAPSHM_NAME || '';
    if (!name) {
      let input = '';
      try { input = require('fs').readFileSync(0, 'utf8'); } catch (e) { /* no stdin */ }
      name = input.split('\n')[0].trim();
    }
    if (!name) {
      console.error('share.js: no NAME on stdin or in CAPSHM_NAME');
      process.exitCode = 2;
    } else {
      attach(name);
    }
  } else {
    console.error('usage: node share.js create | node share.js attach  (NAME on stdin or in CAPSHM_NAME)');
    process.exitCode = 2;
  }
} catch (e) {
  console.error(`share.js: ${e.message}`);
  process.exitCode = 1;
}

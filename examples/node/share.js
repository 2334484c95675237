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
// Node has no mmap, so this uses plain file I/O at offsets (fs.readSync /
// fs.writeSync): every reader and writer of a region sees the same bytes,
// including processes that mmap it.  Only the standard `fs` and `path`
// modules.  The mount is $CAPSHM_DIR, else /run/capshm.  Layout (shared by
// every example): offset 0 the creator's message, offset 2048 the reply,
// offset 4095 set to 1 once the reply is complete.
'use strict';
const fs = require('fs');
const path = require('path');

const DIR = process.env.CAPSHM_DIR || '/run/capshm';
const SIZE = 4096, MSG = 0, REPLY = 2048, DONE = 4095;

// The NUL-terminated string at offset `off`.
function textAt(fd, off) {
  const buf = Buffer.alloc(DONE - off);
  const n = fs.readSync(fd, buf, 0, buf.length, off);
  const end = buf.indexOf(0);
  return buf.toString('utf8', 0, end >= 0 && end < n ? end : n);
}

function writeAt(fd, off, text) {
  const buf = Buffer.from(text + '\0');
  fs.writeSync(fd, buf, 0, buf.length, off);
}

function create() {
  // 1. Mint a name: every read of .new gives a fresh, unguessable one.
  const name = fs.readFileSync(path.join(DIR, '.new'), 'utf8').trim();
  // 2. Create the region (O_CREAT|O_EXCL|O_RDWR) and give it a size.
  //    The open fd keeps the region alive while this process runs.
  const fd = fs.openSync(path.join(DIR, name), 'wx+', 0o600);
  fs.ftruncateSync(fd, SIZE);
  writeAt(fd, MSG, `hello from Node, pid ${process.pid}`);
  console.log(name); // the name is the capability: pass it on

  const flag = Buffer.alloc(1);
  let tries = 0;
  const timer = setInterval(() => {  // wait up to a minute for the reply
    fs.readSync(fd, flag, 0, 1, DONE);
    if (flag[0] === 1) {
      clearInterval(timer);
      console.log('reply: ' + textAt(fd, REPLY));
      fs.closeSync(fd);
    } else if (++tries > 600) {
      clearInterval(timer);
      console.error('share.js: no reply within 60 s');
      process.exitCode = 1;
    }
  }, 100);
}

function attach(name) {
  const fd = fs.openSync(path.join(DIR, name), 'r+');
  console.log('message: ' + textAt(fd, MSG));
  writeAt(fd, REPLY, `thanks from Node, pid ${process.pid}`);
  fs.writeSync(fd, Buffer.from([1]), 0, 1, DONE); // last: the reply is complete
  fs.closeSync(fd);
}

const verb = process.argv[2];
if (verb === 'create' && process.argv.length === 3) {
  create();
} else if (verb === 'attach' && process.argv.length === 3) {
  let name = process.env.CAPSHM_NAME || '';
  if (!name) {
    let input = '';
    try { input = fs.readFileSync(0, 'utf8'); } catch (e) { /* no stdin */ }
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

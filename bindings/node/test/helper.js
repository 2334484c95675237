// SPDX-License-Identifier: MIT
// Shared by the test files: the package under test, the mount, child processes.
//
//   CAPSHM_DIR       the mount to test on (required: the tests never fall
//                    back to /run/capshm)
//   CAPSHM_PACKAGE   the package directory to test (default: ..)
//   CAPSHM_DATAPATH  passthrough or cache, if known (read-only names)
//   CAPSHM_SHARED=0  test the ArrayBuffer mode instead of SharedArrayBuffer
'use strict';
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { spawn } = require('child_process');

assert(process.env.CAPSHM_DIR, 'set CAPSHM_DIR to a capshm mount to test on');
const PKG = path.resolve(process.env.CAPSHM_PACKAGE || path.join(__dirname, '..'));
const capshm = require(PKG);
const DIR = process.env.CAPSHM_DIR;
const DATAPATH = process.env.CAPSHM_DATAPATH || capshm.stats().datapath;
const WANT_SHARED = process.env.CAPSHM_SHARED !== '0';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Run test/fixtures/NAME.js (argvPrefix: e.g. setpriv ...; nodeArgs: node's
// own flags) with extra environment; resolves { code, signal, stdout, stderr }.  `child` is
// handed to onSpawn for tests that talk to it.
function runFixture(name, env = {}, { onSpawn, argvPrefix = [], nodeArgs = [], input } = {}) {
  const script = path.join(__dirname, 'fixtures', name + '.js');
  const argv = argvPrefix.concat([process.execPath], nodeArgs, [script]);
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), {
      env: Object.assign({}, process.env, { CAPSHM_PACKAGE: PKG }, env),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '', stderr = '';
    child.out = '';  // everything printed so far, for firstLine()
    child.stdout.on('data', (d) => { stdout += d; child.out += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    if (input !== undefined) child.stdin.end(input);
    if (onSpawn) onSpawn(child);
  });
}

// The first line a child (of runFixture, or any with a piped stdout)
// prints.
function firstLine(child) {
  return new Promise((resolve, reject) => {
    if (child.out === undefined) {
      child.out = '';
      child.stdout.on('data', (d) => { child.out += d; });
    }
    const check = () => {
      const i = child.out.indexOf('\n');
      if (i < 0) return false;
      child.stdout.off('data', check);
      resolve(child.out.slice(0, i));
      return true;
    };
    if (check()) return;
    child.stdout.on('data', check);
    child.on('close', (c) => reject(new Error('child exited (' + c + ') before a line: ' + child.out)));
  });
}

// Until fn() is true, or fail after ms.
async function until(fn, ms = 10000, what = 'condition') {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (fn()) return;
    await sleep(20);
  }
  assert.fail('timed out waiting for ' + what);
}

// True while pid's main thread sleeps in a futex wait.
function inFutexWait(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/wchan`, 'utf8').includes('futex');
  } catch (_) {
    return false;
  }
}

function exists(name) {
  return fs.existsSync(path.join(DIR, name));
}

module.exports = { capshm, DIR, DATAPATH, WANT_SHARED, PKG, sleep, runFixture, firstLine, until,
                   inFutexWait, exists };

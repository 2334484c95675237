// SPDX-License-Identifier: MIT
//
// capshm: shared-memory regions of a capshm mount, mapped into typed arrays,
// with futex wait/notify that work between processes.  See README.md.
'use strict';
const fs = require('fs');
const path = require('path');

function loadNative() {
  const tried = [];
  for (const kind of ['Release', 'Debug']) {
    const p = path.join(__dirname, 'build', kind, 'capshm.node');
    if (fs.existsSync(p)) return require(p);
    tried.push(p);
  }
  const e = new Error('capshm: the native addon is not built (looked for ' + tried.join(', ') +
                      '); run `npm rebuild capshm` or `node scripts/build.js` in ' + __dirname);
  e.code = 'ERR_CAPSHM_NOT_BUILT';
  throw e;
}

const native = loadNative();

// The optional SharedArrayBuffer addon (V8 API, built for one Node version):
// when it is missing or does not load, regions are plain ArrayBuffers.
let sab = null;
let sabError = null;
if (process.env.CAPSHM_SHARED !== '0' && !process.versions.electron) {
  try {
    sab = require(path.join(__dirname, 'sab', 'build', 'Release', 'capshm_sab.node'));
  } catch (e) {
    sabError = e;
  }
}

const DEFAULT_DIR = '/run/capshm';
const WAIT_RESULTS = ['ok', 'not-equal', 'timed-out'];

function resolveDir(dir) {
  if (dir === undefined || dir === null) dir = process.env.CAPSHM_DIR || DEFAULT_DIR;
  if (typeof dir !== 'string' || dir === '') {
    throw new TypeError('capshm: options.dir must be a non-empty string');
  }
  return path.resolve(dir);
}

function checkOptions(opts) {
  if (opts === undefined || opts === null) return {};
  if (typeof opts !== 'object') throw new TypeError('capshm: options must be an object');
  return opts;
}

function checkInteger(v, name, lo, hi) {
  if (typeof v === 'bigint') v = Number(v);
  if (typeof v !== 'number') throw new TypeError(`capshm: ${name} must be a number`);
  if (!Number.isInteger(v) || v < lo || v > hi) {
    throw new RangeError(`capshm: ${name} must be an integer from ${lo} to ${hi}, got ${v}`);
  }
  return v;
}

function closedError(what) {
  const e = new Error(`capshm: ${what} on a closed region`);
  e.code = 'ERR_CAPSHM_CLOSED';
  return e;
}

const TYPED_ARRAYS = new Set([Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array,
  Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array]);

class Region {
  constructor(raw, readOnly) {
    this._handle = raw.handle;
    this.name = raw.name;
    this.path = raw.path;
    this.size = raw.size;
    this.readOnly = readOnly;
    this._closed = false;
    if (raw.buffer === undefined) {
      // Map it here as a SharedArrayBuffer (the descriptor stays native's).
      this._buffer = this.size > 0 ? sab.map(native.fd(this._handle), this.size, readOnly)
                                   : new SharedArrayBuffer(0);
      this.shared = true;
    } else {
      this._buffer = raw.buffer;
      this.shared = false;
    }
  }

  // The whole mapping: a SharedArrayBuffer when `shared`, else an ArrayBuffer.
  get buffer() {
    return this._buffer;
  }

  get closed() {
    return this._closed;
  }

  // new Ctor(buffer, byteOffset, length) over the mapping; length defaults to
  // as many elements as fit.  Ctor: a TypedArray constructor or DataView.
  view(Ctor = Uint8Array, byteOffset = 0, length) {
    if (this._closed) throw closedError('view()');
    if (!TYPED_ARRAYS.has(Ctor) && Ctor !== DataView && !(Ctor && Ctor.prototype instanceof Uint8Array)) {
      throw new TypeError('capshm: view() takes a TypedArray constructor or DataView');
    }
    checkInteger(byteOffset, 'byteOffset', 0, this.size);
    if (Ctor === DataView) {
      if (length === undefined) length = this.size - byteOffset;
      checkInteger(length, 'length', 0, this.size - byteOffset);
      return new DataView(this._buffer, byteOffset, length);
    }
    const per = Ctor.BYTES_PER_ELEMENT;
    if (byteOffset % per !== 0) {
      throw new RangeError(`capshm: byteOffset of a ${Ctor.name} must be a multiple of ${per}`);
    }
    if (length === undefined) length = Math.floor((this.size - byteOffset) / per);
    checkInteger(length, 'length', 0, Math.floor((this.size - byteOffset) / per));
    return new Ctor(this._buffer, byteOffset, length);
  }

  // The region's read-only name (passthrough mounts; EOPNOTSUPP on cache).
  roName() {
    if (this._closed) throw closedError('roName()');
    return native.getxattr(this._handle, 'user.capshm.ro');
  }

  pin() {
    if (this._closed) throw closedError('pin()');
    native.setxattr(this._handle, 'user.capshm.pin', '1');
  }

  unpin() {
    if (this._closed) throw closedError('unpin()');
    native.setxattr(this._handle, 'user.capshm.pin', '0');
  }

  seal() {
    if (this._closed) throw closedError('seal()');
    native.setxattr(this._handle, 'user.capshm.seal', '1');
  }

  // Unmap and close now.  An ArrayBuffer is detached (views become empty and
  // throw-free: reads give undefined); a SharedArrayBuffer cannot be
  // detached, so its pages are replaced by private zero pages.  Either way
  // this process stops holding the region.  Idempotent.
  close() {
    if (this._closed) return;
    this._closed = true;
    if (this.shared) {
      if (this.size > 0) sab.release(this._buffer);
      native.close(this._handle, null);
    } else {
      native.close(this._handle, this._buffer);
    }
  }

  toJSON() {
    return { name: this.name, path: this.path, size: this.size, readOnly: this.readOnly,
             shared: this.shared, closed: this._closed };
  }
}

if (typeof Symbol.dispose === 'symbol') {
  Region.prototype[Symbol.dispose] = Region.prototype.close;
}

function useShared(opts) {
  if (opts.shared === undefined) return sab !== null;
  if (typeof opts.shared !== 'boolean') throw new TypeError('capshm: options.shared must be a boolean');
  if (opts.shared && sab === null) {
    const e = new Error('capshm: SharedArrayBuffer regions are not available in this Node' +
                        (sabError ? ': ' + sabError.message : ''));
    e.code = 'ERR_CAPSHM_NO_SHARED';
    throw e;
  }
  return opts.shared;
}

// Mint a name, create the region (O_CREAT|O_EXCL, mode & ~umask) and size it.
function create(size, opts) {
  opts = checkOptions(opts);
  size = checkInteger(size, 'size', 1, Number.MAX_SAFE_INTEGER);
  const mode = opts.mode === undefined ? 0o600 : checkInteger(opts.mode, 'options.mode', 0, 0o7777);
  const dir = resolveDir(opts.dir);
  const shared = useShared(opts);
  const raw = native.create(dir, size, mode, !shared);
  let r;
  try {
    r = new Region(raw, false);
    if (opts.pin) r.pin();
  } catch (e) {
    if (r) r.close(); else native.close(raw.handle, raw.buffer || null);
    try { fs.unlinkSync(raw.path); } catch (_) { /* already gone */ }
    throw e;
  }
  return r;
}

// Open an existing region by name (read-write, or read-only: see README).
function open(name, opts) {
  opts = checkOptions(opts);
  if (typeof name !== 'string') throw new TypeError('capshm: name must be a string');
  if (name === '' || name.includes('/') || name.startsWith('.') || name.includes('\0')) {
    throw new TypeError(`capshm: not a region name: ${JSON.stringify(name)}`);
  }
  const dir = resolveDir(opts.dir);
  const readOnly = !!opts.readOnly;
  const shared = useShared(opts);
  const raw = native.open(dir, name, readOnly, !shared);
  try {
    return new Region(raw, readOnly);
  } catch (e) {
    native.close(raw.handle, raw.buffer || null);
    throw e;
  }
}

// The mount's .stats (JSON).
function stats(opts) {
  opts = checkOptions(opts);
  return JSON.parse(fs.readFileSync(path.join(resolveDir(opts.dir), '.stats'), 'utf8'));
}

function checkInt32Array(a, fn) {
  if (!(a instanceof Int32Array)) throw new TypeError(`capshm.${fn}: the first argument must be an Int32Array`);
}

function checkIndex(a, index, fn) {
  if (typeof index !== 'number') throw new TypeError(`capshm.${fn}: index must be a number`);
  if (!Number.isInteger(index) || index < 0 || index >= a.length) {
    throw new RangeError(`capshm.${fn}: index ${index} is out of range (length ${a.length})`);
  }
}

function waitArgs(a, index, expected, timeoutMs, fn) {
  checkInt32Array(a, fn);
  checkIndex(a, index, fn);
  if (typeof expected !== 'number' && typeof expected !== 'bigint') {
    throw new TypeError(`capshm.${fn}: expected must be a number`);
  }
  expected = Number(expected) | 0;
  let t = timeoutMs === undefined ? Infinity : Number(timeoutMs);
  if (Number.isNaN(t) || t === Infinity) t = -1;
  else if (t < 0) t = 0;
  return [expected, t];
}

// Block until a[index] is notified (cross-process FUTEX_WAIT on the shared
// page), unless a[index] !== expected at the start, or timeoutMs passes.
// Like Atomics.wait, but between processes.  'ok' may also be a spurious
// wake-up: re-check the value in a loop.
function wait(a, index, expected, timeoutMs) {
  const [e, t] = waitArgs(a, index, expected, timeoutMs, 'wait');
  return WAIT_RESULTS[native.wait(a, index, e, t)];
}

// The same without blocking the event loop: resolves to 'ok', 'not-equal' or
// 'timed-out'.  Each pending wait has its own small thread.
function waitAsync(a, index, expected, timeoutMs) {
  const [e, t] = waitArgs(a, index, expected, timeoutMs, 'waitAsync');
  return native.waitAsync(a, index, e, t).then((rc) => WAIT_RESULTS[rc]);
}

// Wake up to count waiters (default: all) on a[index], in any process.
// Returns how many were woken.
function notify(a, index, count) {
  checkInt32Array(a, 'notify');
  checkIndex(a, index, 'notify');
  let c = count === undefined ? Infinity : Number(count);
  if (Number.isNaN(c)) c = 0;
  c = c === Infinity ? Infinity : Math.max(0, Math.trunc(c));
  return native.notify(a, index, c === Infinity ? 2147483647 : Math.min(c, 2147483647));
}

module.exports = {
  create,
  open,
  stats,
  wait,
  waitAsync,
  notify,
  Region,
  sharedArrayBufferSupported: sab !== null,
  DEFAULT_DIR,
};

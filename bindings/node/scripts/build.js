#!/usr/bin/env node
// SPDX-License-Identifier: MIT
//
// The package's install script: build the addons with node-gyp against the
// headers of the Node that runs this script, never downloading anything.
//
//   build/Release/capshm.node       required (Node-API, C)
//   sab/build/Release/capshm_sab.node  optional (V8 API: SharedArrayBuffer);
//                                   a failure here is a warning
//
// Node's headers: $npm_config_nodedir if set, else the first of
// <prefix of the node binary>, /usr/local, /usr whose include/node has
// node_api.h and common.gypi (Node's own tarballs and NodeSource's package
// put them next to the binary; Debian's libnode-dev in /usr/include/node).
// node-gyp: $npm_config_node_gyp (npm sets it for install scripts), else the
// one bundled with npm next to this node, else `node-gyp` on PATH (Debian's
// node-gyp package).
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const here = path.resolve(__dirname, '..');

function hasHeaders(dir) {
  const inc = path.join(dir, 'include', 'node');
  return fs.existsSync(path.join(inc, 'node_api.h')) && fs.existsSync(path.join(inc, 'common.gypi'));
}

function nodeDir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  for (const d of [prefix, '/usr/local', '/usr']) if (hasHeaders(d)) return d;
  return null;
}

function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm',
              'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    '/usr/share/nodejs/node-gyp/bin/node-gyp.js',
  ];
  for (const c of candidates) if (c && fs.existsSync(c)) return [process.execPath, c];
  for (const d of (process.env.PATH || '').split(path.delimiter)) {
    const c = path.join(d, 'node-gyp');
    if (d && fs.existsSync(c)) return [c];
  }
  return null;
}

function fail(msg) {
  console.error('capshm: ' + msg);
  process.exit(1);
}

const dir = nodeDir();
if (!dir) {
  fail('no Node.js headers (include/node/node_api.h) next to ' + process.execPath +
       ', in /usr/local or /usr; install them (Debian: libnode-dev) or set npm_config_nodedir');
}
const gyp = nodeGyp();
if (!gyp) fail('node-gyp not found (it comes with npm; Debian: apt-get install node-gyp)');

function gypRun(cwd, quiet) {
  const args = gyp.slice(1).concat(['rebuild', '--nodedir=' + dir]);
  if (process.env.CAPSHM_DEBUG_BUILD) args.push('--debug');
  const r = spawnSync(gyp[0], args, {
    cwd,
    stdio: quiet ? ['ignore', 'pipe', 'pipe'] : 'inherit',
    env: Object.assign({}, process.env, { npm_config_nodedir: dir }),
  });
  return r;
}

const main = gypRun(here, false);
if (main.status !== 0) fail('building capshm.node failed (node-gyp rebuild, headers from ' + dir + ')');

if (process.versions.electron || process.env.CAPSHM_NO_SAB_BUILD) {
  process.exit(0);
}
const sab = gypRun(path.join(here, 'sab'), true);
if (sab.status !== 0) {
  console.warn('capshm: warning: the optional SharedArrayBuffer addon did not build; ' +
               'regions will be plain ArrayBuffers.\n' +
               String(sab.stderr || '').split('\n').slice(-15).join('\n'));
}

# SPDX-License-Identifier: MIT
# capshm.node: plain C on Node-API (ABI-stable: one build serves every Node >= 18).
# The optional SharedArrayBuffer addon is sab/binding.gyp, built by scripts/build.js.
{
  "targets": [
    {
      "target_name": "capshm",
      "sources": ["src/capshm.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_c": ["-std=gnu11"],
      "libraries": ["-lpthread"]
    }
  ]
}

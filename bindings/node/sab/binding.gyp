# SPDX-License-Identifier: MIT
# capshm_sab.node: V8 API, tied to the Node version it was built for
# (see src/sab.cc); optional.
{
  "targets": [
    {
      "target_name": "capshm_sab",
      "sources": ["src/sab.cc"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}

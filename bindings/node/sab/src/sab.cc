// SPDX-License-Identifier: MIT
/*
 * capshm_sab: a SharedArrayBuffer over a region's mapping.  Node-API can only
 * wrap foreign memory as an ArrayBuffer, so this small addon uses V8's own
 * API (v8::SharedArrayBuffer::NewBackingStore with a deleter).  That API is
 * not ABI-stable, so this addon is registered with NODE_MODULE_INIT: Node
 * refuses to load it (a clean exception, which index.js catches) when it
 * was built for another NODE_MODULE_VERSION, and index.js then falls back
 * to capshm.node's ArrayBuffer.  It is built separately (sab/binding.gyp),
 * and a failed build only loses the SharedArrayBuffer.
 *
 *   map(fd, length, readOnly) -> SharedArrayBuffer over mmap(fd); the mapping
 *                                is unmapped when the last SharedArrayBuffer
 *                                using it (in any worker) is collected
 *   release(sab)              -> replace the mapping with private zero
 *                                pages: the region is let go now, and any
 *                                SharedArrayBuffer still around stays valid
 *                                memory (it no longer shows the region)
 */
#include <node.h>
#include <v8.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <sys/mman.h>

namespace {

void Unmap(void *data, size_t length, void *) {
    if (data && length)
        munmap(data, length);
}

void ThrowErrno(v8::Isolate *isolate, int err, const char *syscall) {
    v8::Local<v8::Context> ctx = isolate->GetCurrentContext();
    const char *name = strerrorname_np(err);
    char msg[256];
    snprintf(msg, sizeof msg, "%s: %s, %s", name ? name : "EIO", strerror(err), syscall);
    v8::Local<v8::Value> e = v8::Exception::Error(
        v8::String::NewFromUtf8(isolate, msg).ToLocalChecked());
    e.As<v8::Object>()->Set(ctx, v8::String::NewFromUtf8Literal(isolate, "code"),
                            v8::String::NewFromUtf8(isolate, name ? name : "EIO")
                                .ToLocalChecked()).Check();
    e.As<v8::Object>()->Set(ctx, v8::String::NewFromUtf8Literal(isolate, "errno"),
                            v8::Integer::New(isolate, -err)).Check();
    isolate->ThrowException(e);
}

void ThrowType(v8::Isolate *isolate, const char *msg) {
    isolate->ThrowException(v8::Exception::TypeError(
        v8::String::NewFromUtf8(isolate, msg).ToLocalChecked()));
}

void Map(const v8::FunctionCallbackInfo<v8::Value> &args) {
    v8::Isolate *isolate = args.GetIsolate();
    if (args.Length() < 3 || !args[0]->IsInt32() || !args[1]->IsNumber()) {
        ThrowType(isolate, "capshm_sab.map(fd, length, readOnly)");
        return;
    }
    int fd = args[0].As<v8::Int32>()->Value();
    double len = args[1].As<v8::Number>()->Value();
    bool read_only = args[2]->BooleanValue(isolate);
    if (!(len >= 1 && len <= 9007199254740991.0)) {
        ThrowType(isolate, "capshm_sab.map: bad length");
        return;
    }
    size_t n = static_cast<size_t>(len);
    // Read-only: a private, writable mapping of the O_RDONLY descriptor (see
    // capshm.c): writes from JavaScript stay in this process, never crash.
    void *p = mmap(nullptr, n, PROT_READ | PROT_WRITE, read_only ? MAP_PRIVATE : MAP_SHARED,
                   fd, 0);
    if (p == MAP_FAILED) {
        ThrowErrno(isolate, errno, "mmap");
        return;
    }
    std::unique_ptr<v8::BackingStore> store =
        v8::SharedArrayBuffer::NewBackingStore(p, n, Unmap, nullptr);
    args.GetReturnValue().Set(v8::SharedArrayBuffer::New(isolate, std::move(store)));
}

void Release(const v8::FunctionCallbackInfo<v8::Value> &args) {
    v8::Isolate *isolate = args.GetIsolate();
    if (args.Length() < 1 || !args[0]->IsSharedArrayBuffer()) {
        ThrowType(isolate, "capshm_sab.release(sharedArrayBuffer)");
        return;
    }
    std::shared_ptr<v8::BackingStore> store =
        args[0].As<v8::SharedArrayBuffer>()->GetBackingStore();
    void *p = store->Data();
    size_t n = store->ByteLength();
    if (p && n &&
        mmap(p, n, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) ==
            MAP_FAILED) {
        ThrowErrno(isolate, errno, "mmap");
        return;
    }
}

}  // namespace

NODE_MODULE_INIT(/* exports, module, context */) {
    v8::Isolate *isolate = context->GetIsolate();
    exports->Set(context, v8::String::NewFromUtf8Literal(isolate, "map"),
                 v8::FunctionTemplate::New(isolate, Map)->GetFunction(context).ToLocalChecked())
        .Check();
    exports->Set(context, v8::String::NewFromUtf8Literal(isolate, "release"),
                 v8::FunctionTemplate::New(isolate, Release)->GetFunction(context)
                     .ToLocalChecked())
        .Check();
}

// SPDX-License-Identifier: MIT
// Type declarations for the capshm package.

/** A TypedArray constructor (or DataView) that Region.view() accepts. */
export type ViewConstructor =
  | Int8ArrayConstructor | Uint8ArrayConstructor | Uint8ClampedArrayConstructor
  | Int16ArrayConstructor | Uint16ArrayConstructor | Int32ArrayConstructor
  | Uint32ArrayConstructor | Float32ArrayConstructor | Float64ArrayConstructor
  | BigInt64ArrayConstructor | BigUint64ArrayConstructor | DataViewConstructor;

export interface CreateOptions {
  /** Mode bits of the new region (umask applies, as for open(2)). Default 0o600. */
  mode?: number;
  /** Pin the region (it outlives its holders until unpinned or removed). */
  pin?: boolean;
  /** The capshm mount. Default: $CAPSHM_DIR, else /run/capshm. */
  dir?: string;
  /** true: SharedArrayBuffer (default where available); false: ArrayBuffer. */
  shared?: boolean;
}

export interface OpenOptions {
  /**
   * Open O_RDONLY (e.g. by a read-only name). The mapping is private
   * copy-on-write: reads see the writers' bytes; JavaScript writes stay in
   * this process (and that page stops following the region).
   */
  readOnly?: boolean;
  dir?: string;
  shared?: boolean;
}

export declare class Region {
  /** The region's name (26 characters of [a-z2-7]): the capability. */
  readonly name: string;
  /** Absolute path of the region on the mount. */
  readonly path: string;
  /** Size in bytes (fixed when created or opened). */
  readonly size: number;
  readonly readOnly: boolean;
  /** true: `buffer` is a SharedArrayBuffer; false: an ArrayBuffer. */
  readonly shared: boolean;
  readonly closed: boolean;
  /** The whole mapping. */
  readonly buffer: SharedArrayBuffer | ArrayBuffer;
  /** new Ctor(buffer, byteOffset, length); length defaults to what fits. */
  view<T extends ViewConstructor = Uint8ArrayConstructor>(
    Ctor?: T, byteOffset?: number, length?: number): InstanceType<T>;
  /** The read-only name (passthrough mounts; EOPNOTSUPP on cache mounts). */
  roName(): string;
  pin(): void;
  unpin(): void;
  /** Make the region immutable (EBUSY while writable opens or mappings exist). */
  seal(): void;
  /**
   * Unmap and close now: this process stops holding the region. An
   * ArrayBuffer is detached; a SharedArrayBuffer's pages become private zeros.
   */
  close(): void;
}

/** An Error from a system call: code is the errno name (ENOENT, EACCES, EDQUOT, ...). */
export interface CapshmError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
}

export type WaitResult = 'ok' | 'not-equal' | 'timed-out';

/** Mint a name, create the region, size it and map it. */
export declare function create(size: number | bigint, options?: CreateOptions): Region;
/** Open and map an existing region by name. */
export declare function open(name: string, options?: OpenOptions): Region;
/** The mount's .stats. */
export declare function stats(options?: { dir?: string }): Record<string, unknown>;
/**
 * Block until array[index] is notified, from any process that maps the same
 * region (a non-private futex), unless it is not `expected` to begin with or
 * timeoutMs (default: forever) passes. 'ok' may be spurious: re-check.
 */
export declare function wait(array: Int32Array, index: number, expected: number,
                             timeoutMs?: number): WaitResult;
/** wait() without blocking the event loop. */
export declare function waitAsync(array: Int32Array, index: number, expected: number,
                                  timeoutMs?: number): Promise<WaitResult>;
/** Wake up to count (default: all) waiters on array[index] in any process. */
export declare function notify(array: Int32Array, index: number, count?: number): number;
/** Whether this Node can give regions as SharedArrayBuffers. */
export declare const sharedArrayBufferSupported: boolean;
export declare const DEFAULT_DIR: string;

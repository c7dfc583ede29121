/* SPDX-License-Identifier: Apache-2.0 */
/* digest.h: the segmented xxh3-128 of a file, computable while it is written. */
#ifndef KNIB_COMMON_DIGEST_H
#define KNIB_COMMON_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The digest of a file of size bytes: cut it into segments of
 * DIGEST_SEGMENT bytes (the last one shorter), take the xxh3-128 of each
 * (its canonical, big-endian 16 bytes), and the xxh3-128 of those in
 * file order.  An empty file's digest is the xxh3-128 of nothing.
 *
 * Unlike one xxh3-128 of the whole file it can be computed by a writer
 * that does not write every byte in file order: each segment is hashed
 * when the writer passes it, and only the segments written again later
 * (an image's header, written last) are read back at the end. */
#define DIGEST_SEGMENT (UINT64_C (4) * 1024 * 1024)

/* Lowercase hex of a 128-bit digest, without its NUL. */
#define DIGEST_HEX_LEN 32

struct digest;

/* A digest of a file being written from offset 0.  NULL with set_error. */
struct digest *digest_new (void) __attribute__ ((warn_unused_result));

void digest_free (struct digest *d);

/* len bytes (data NULL: zeros) were written at offset.  Bytes beyond
 * what was hashed so far are hashed (a gap before them reads as zeros,
 * as in a sparse file); segments already hashed that the write touches
 * are hashed again from the file by digest_finish.  Returns 0, or -1
 * with set_error (out of memory). */
int digest_wrote (struct digest *d, const void *data, uint64_t len,
                  uint64_t offset) __attribute__ ((warn_unused_result));

/* The digest of the finished file, size bytes long (bytes past what was
 * written read as zeros), reading back from fd (open for reading) the
 * segments written out of order.  Returns 0, or -1 with set_error. */
int digest_finish (struct digest *d, int fd, uint64_t size,
                   char hex[DIGEST_HEX_LEN + 1])
  __attribute__ ((warn_unused_result));

/* From the bytes hashed so far on, keep what is written in memory (up to
 * DIGEST_HOLD_MAX bytes) instead of hashing it: writes behind that point
 * then patch memory, and digest_finish reads nothing back for them (an
 * image's tables, reserved before the blocks and written after them).
 * Past DIGEST_HOLD_MAX the bytes are hashed and later writes behind them
 * read back, as without it. */
#define DIGEST_HOLD_MAX DIGEST_SEGMENT
void digest_hold (struct digest *d);

/* Whether digest_finish will read segment s back (a write came behind
 * the bytes hashed): a writer keeps its pages cached until then. */
bool digest_rereads (const struct digest *d, uint64_t s);

/* Segments digest_finish read back (for tests and debug output). */
uint64_t digest_reread (const struct digest *d);

/* The digest of the file open in fd, read from the start. */
int digest_fd (int fd, char hex[DIGEST_HEX_LEN + 1])
  __attribute__ ((warn_unused_result));

/* xxh3-128 of the whole file, read from the start (the hash of the first
 * manifests). */
int digest_fd_whole (int fd, char hex[DIGEST_HEX_LEN + 1])
  __attribute__ ((warn_unused_result));

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* compress.c: compress one cluster the way QEMU's qcow2 driver decompresses it. */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "common/error.h"
#include "internal.h"

/* QEMU inflates raw deflate data with a 4 KiB window. */
#define QCOW2_ZLIB_WINDOW_BITS (-12)

struct qcow2_compressor {
  enum qcow2_compression type;
  size_t cluster_size;
  z_stream zs;
  bool zs_ready;
  ZSTD_CCtx *zctx;
};

static int
zlib_init (struct qcow2_compressor *c, int level)
{
  int r
    = deflateInit2 (&c->zs, level ? level : Z_DEFAULT_COMPRESSION, Z_DEFLATED,
                    QCOW2_ZLIB_WINDOW_BITS, 8, Z_DEFAULT_STRATEGY);

  if (r != Z_OK) {
    set_error (r == Z_MEM_ERROR ? ENOMEM : EINVAL,
               "zlib: deflateInit2 failed (%d)", r);
    return -1;
  }
  c->zs_ready = true;
  return 0;
}

static int
zstd_init (struct qcow2_compressor *c, int level)
{
  size_t r;

  c->zctx = ZSTD_createCCtx ();
  if (c->zctx == NULL) {
    set_error (ENOMEM, "zstd: creating a compression context");
    return -1;
  }
  r = ZSTD_CCtx_setParameter (c->zctx, ZSTD_c_compressionLevel,
                              level ? level : ZSTD_CLEVEL_DEFAULT);
  if (ZSTD_isError (r)) {
    set_error (EINVAL, "zstd: compression level %d: %s", level,
               ZSTD_getErrorName (r));
    return -1;
  }
  return 0;
}

struct qcow2_compressor *
qcow2_compressor_new (enum qcow2_compression type, uint32_t cluster_size,
                      int level)
{
  struct qcow2_compressor *c;
  int r = -1;

  if (cluster_size < QCOW2_MIN_CLUSTER_SIZE
      || cluster_size > QCOW2_MAX_CLUSTER_SIZE
      || (cluster_size & (cluster_size - 1)) != 0) {
    set_error (EINVAL, "invalid cluster size %u", (unsigned) cluster_size);
    return NULL;
  }
  c = calloc (1, sizeof *c);
  if (c == NULL) {
    set_error (ENOMEM, "allocating a compressor");
    return NULL;
  }
  c->type = type;
  c->cluster_size = cluster_size;
  switch (type) {
  case QCOW2_COMPRESSION_ZLIB:
    r = zlib_init (c, level);
    break;
  case QCOW2_COMPRESSION_ZSTD:
    r = zstd_init (c, level);
    break;
  }
  if (r == -1) {
    if (type != QCOW2_COMPRESSION_ZLIB && type != QCOW2_COMPRESSION_ZSTD)
      set_error (EINVAL, "invalid compression type %d", (int) type);
    qcow2_compressor_free (c);
    return NULL;
  }
  return c;
}

void
qcow2_compressor_free (struct qcow2_compressor *c)
{
  if (c == NULL)
    return;
  if (c->zs_ready)
    deflateEnd (&c->zs);
  ZSTD_freeCCtx (c->zctx);
  free (c);
}

static ssize_t
zlib_compress (struct qcow2_compressor *c, const void *in, void *out,
               size_t limit)
{
  int r;

  if (deflateReset (&c->zs) != Z_OK) {
    set_error (EIO, "zlib: deflateReset failed");
    return -1;
  }
  c->zs.next_in = (Bytef *) in;
  c->zs.avail_in = (uInt) c->cluster_size;
  c->zs.next_out = out;
  c->zs.avail_out = (uInt) limit;
  r = deflate (&c->zs, Z_FINISH);
  if (r == Z_STREAM_END)
    return (ssize_t) c->zs.total_out;
  if (r == Z_OK || r == Z_BUF_ERROR)
    return 0; /* it did not fit: store the cluster raw */
  set_error (EIO, "zlib: deflate failed (%d)", r);
  return -1;
}

static ssize_t
zstd_compress (struct qcow2_compressor *c, const void *in, void *out,
               size_t limit)
{
  size_t r = ZSTD_compress2 (c->zctx, out, limit, in, c->cluster_size);

  if (!ZSTD_isError (r))
    return (ssize_t) r;
  if (ZSTD_getErrorCode (r) == ZSTD_error_dstSize_tooSmall)
    return 0;
  set_error (EIO, "zstd: %s", ZSTD_getErrorName (r));
  return -1;
}

ssize_t
qcow2_compressor_compress (struct qcow2_compressor *c, const void *in,
                           void *out, size_t out_size)
{
  /* Only data that shrinks is worth storing compressed. */
  size_t limit
    = out_size < c->cluster_size - 1 ? out_size : c->cluster_size - 1;

  if (limit == 0)
    return 0;
  switch (c->type) {
  case QCOW2_COMPRESSION_ZLIB:
    return zlib_compress (c, in, out, limit);
  case QCOW2_COMPRESSION_ZSTD:
    return zstd_compress (c, in, out, limit);
  }
  set_error (EINVAL, "invalid compression type %d", (int) c->type);
  return -1;
}

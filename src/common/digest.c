/* SPDX-License-Identifier: Apache-2.0 */
/* digest.c: the segmented xxh3-128 of a file, hashed as it is written. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "common/digest.h"
#include "common/error.h"
#include "common/vector.h"

/* Reads of the file: this many bytes at a time, from an aligned buffer
 * (the file may be open with O_DIRECT). */
#define DIGEST_READ (UINT64_C (1) << 20)
#define DIGEST_ALIGN 4096u

DEFINE_VECTOR_TYPE (digest_sum_vector, XXH128_canonical_t)
DEFINE_VECTOR_TYPE (digest_index_vector, uint64_t)

struct digest {
  XXH3_state_t *state;       /* the segment pos is in */
  uint64_t pos;              /* bytes hashed, from offset 0 */
  digest_sum_vector sums;    /* one per finished segment */
  digest_index_vector dirty; /* segments to read back at the end */
  uint64_t reread;
  bool holding;        /* digest_hold: bytes from pos on are in held */
  unsigned char *held; /* held_len bytes of the file from pos on */
  uint64_t held_len, held_size;
};

static const unsigned char zeros[64 * 1024];

struct digest *
digest_new (void)
{
  struct digest *d = calloc (1, sizeof *d);

  if (d == NULL || (d->state = XXH3_createState ()) == NULL) {
    free (d);
    set_error (ENOMEM, "digest");
    return NULL;
  }
  XXH3_128bits_reset (d->state);
  return d;
}

void
digest_free (struct digest *d)
{
  if (d == NULL)
    return;
  XXH3_freeState (d->state);
  digest_sum_vector_reset (&d->sums);
  digest_index_vector_reset (&d->dirty);
  free (d->held);
  free (d);
}

bool
digest_rereads (const struct digest *d, uint64_t s)
{
  for (size_t i = 0; i < d->dirty.len; i++)
    if (d->dirty.ptr[i] == s)
      return true;
  return false;
}

uint64_t
digest_reread (const struct digest *d)
{
  return d->reread;
}

/* The segment being hashed is complete. */
static int
end_segment (struct digest *d)
{
  XXH128_canonical_t c;

  XXH128_canonicalFromHash (&c, XXH3_128bits_digest (d->state));
  XXH3_128bits_reset (d->state);
  if (digest_sum_vector_append (&d->sums, c) == -1) {
    set_error (ENOMEM, "digest");
    return -1;
  }
  return 0;
}

/* Hash len bytes at pos (data NULL: zeros). */
static int
feed (struct digest *d, const unsigned char *data, uint64_t len)
{
  while (len > 0) {
    uint64_t room = DIGEST_SEGMENT - d->pos % DIGEST_SEGMENT;
    uint64_t n = len < room ? len : room;

    if (data == NULL && n > sizeof zeros)
      n = sizeof zeros;
    XXH3_128bits_update (d->state, data != NULL ? data : zeros, (size_t) n);
    d->pos += n;
    len -= n;
    if (data != NULL)
      data += n;
    if (d->pos % DIGEST_SEGMENT == 0 && end_segment (d) == -1)
      return -1;
  }
  return 0;
}

void
digest_hold (struct digest *d)
{
  d->holding = true;
}

/* Hash what digest_hold kept and hold no more. */
static int
release (struct digest *d)
{
  int r = feed (d, d->held, d->held_len);

  free (d->held);
  d->held = NULL;
  d->held_len = d->held_size = 0;
  d->holding = false;
  return r;
}

/* The part of a write at or past pos, held in memory: 1 when it is kept,
 * 0 when holding ended (too much) and the write goes the usual way. */
static int
hold_write (struct digest *d, const unsigned char *p, uint64_t len,
            uint64_t offset)
{
  uint64_t at = offset - d->pos, end = at + len;

  if (end > DIGEST_HOLD_MAX)
    return release (d) == -1 ? -1 : 0;
  if (end > d->held_size) {
    uint64_t size = d->held_size ? d->held_size : 65536;
    unsigned char *n;

    while (size < end)
      size *= 2;
    if (size > DIGEST_HOLD_MAX)
      size = DIGEST_HOLD_MAX;
    n = realloc (d->held, (size_t) size);
    if (n == NULL) {
      set_error (ENOMEM, "digest");
      return -1;
    }
    d->held = n;
    d->held_size = size;
  }
  if (at > d->held_len) /* a gap reads as zeros */
    memset (d->held + d->held_len, 0, (size_t) (at - d->held_len));
  if (p != NULL)
    memcpy (d->held + at, p, (size_t) len);
  else
    memset (d->held + at, 0, (size_t) len);
  if (end > d->held_len)
    d->held_len = end;
  return 1;
}

int
digest_wrote (struct digest *d, const void *data, uint64_t len, uint64_t offset)
{
  const unsigned char *p = data;
  uint64_t end = offset + len, s;

  if (len == 0)
    return 0;
  if (d->holding && end > d->pos) {
    uint64_t skip = offset < d->pos ? d->pos - offset : 0;
    int r
      = hold_write (d, p != NULL ? p + skip : NULL, len - skip, offset + skip);

    if (r == -1)
      return -1;
    if (r == 1) {
      if (skip == 0)
        return 0;
      end = d->pos; /* the part before pos: read back below */
      len = skip;
    }
  }
  if (offset < d->pos) {
    uint64_t last = (end < d->pos ? end : d->pos) - 1;

    for (s = offset / DIGEST_SEGMENT; s <= last / DIGEST_SEGMENT; s++)
      if (digest_index_vector_append (&d->dirty, s) == -1) {
        set_error (ENOMEM, "digest");
        return -1;
      }
    if (end <= d->pos)
      return 0;
    if (p != NULL)
      p += d->pos - offset;
    offset = d->pos;
  }
  if (offset > d->pos && feed (d, NULL, offset - d->pos) == -1)
    return -1;
  return feed (d, p, end - offset);
}

/* Read want bytes at offset into buf (short only at the end of file). */
static int
read_at (int fd, unsigned char *buf, uint64_t want, uint64_t offset,
         uint64_t *got)
{
  /* Aligned lengths, for a file open with O_DIRECT. */
  uint64_t ask = (want + DIGEST_ALIGN - 1) & ~(uint64_t) (DIGEST_ALIGN - 1);

  *got = 0;
  while (*got < want) {
    ssize_t n
      = pread (fd, buf + *got, (size_t) (ask - *got), (off_t) (offset + *got));

    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1) {
      set_error (errno, "read at %" PRIu64, offset + *got);
      return -1;
    }
    if (n == 0)
      break;
    *got += (uint64_t) n;
  }
  if (*got > want)
    *got = want;
  return 0;
}

static int
compare_u64 (const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

  return x < y ? -1 : x > y;
}

/* Hash segment s again from the file, of size bytes. */
static int
reread_segment (struct digest *d, int fd, uint64_t size, uint64_t s,
                unsigned char *buf)
{
  uint64_t start = s * DIGEST_SEGMENT, off, got;
  uint64_t end = size - start < DIGEST_SEGMENT ? size : start + DIGEST_SEGMENT;

  XXH3_128bits_reset (d->state);
  for (off = start; off < end; off += DIGEST_READ) {
    uint64_t want = end - off < DIGEST_READ ? end - off : DIGEST_READ;

    if (read_at (fd, buf, want, off, &got) == -1)
      return -1;
    if (got < want) {
      set_error (EIO, "the file ends at %" PRIu64 ", before %" PRIu64,
                 off + got, size);
      return -1;
    }
    XXH3_128bits_update (d->state, buf, (size_t) got);
  }
  XXH128_canonicalFromHash (&d->sums.ptr[s], XXH3_128bits_digest (d->state));
  d->reread++;
  return 0;
}

static void
to_hex (const XXH128_canonical_t *c, char hex[DIGEST_HEX_LEN + 1])
{
  for (size_t i = 0; i < sizeof c->digest; i++)
    snprintf (hex + 2 * i, 3, "%02x", c->digest[i]);
}

int
digest_finish (struct digest *d, int fd, uint64_t size,
               char hex[DIGEST_HEX_LEN + 1])
{
  unsigned char *buf = NULL;
  XXH128_canonical_t c;
  size_t i;

  if (d->holding && release (d) == -1)
    return -1;
  if (d->pos > size) {
    set_error (EINVAL,
               "digest: %" PRIu64 " bytes hashed of a %" PRIu64 "-byte file",
               d->pos, size);
    return -1;
  }
  if (feed (d, NULL, size - d->pos) == -1)
    return -1;
  if (d->pos % DIGEST_SEGMENT != 0 && end_segment (d) == -1)
    return -1;
  if (d->dirty.len > 1) /* qsort's pointer must not be NULL, even for none */
    qsort (d->dirty.ptr, d->dirty.len, sizeof (uint64_t), compare_u64);
  for (i = 0; i < d->dirty.len; i++) {
    uint64_t s = d->dirty.ptr[i];

    if ((i > 0 && s == d->dirty.ptr[i - 1]) || s >= d->sums.len)
      continue;
    if (buf == NULL
        && posix_memalign ((void **) &buf, DIGEST_ALIGN, DIGEST_READ) != 0) {
      set_error (ENOMEM, "digest");
      return -1;
    }
    if (reread_segment (d, fd, size, s, buf) == -1) {
      free (buf);
      return -1;
    }
  }
  free (buf);
  d->dirty.len = 0;
  XXH128_canonicalFromHash (
    &c, XXH3_128bits (d->sums.ptr, d->sums.len * sizeof (XXH128_canonical_t)));
  to_hex (&c, hex);
  return 0;
}

/* Read fd from the start, handing every piece to fn. */
static int
read_all (int fd, int (*fn) (void *, const unsigned char *, uint64_t, uint64_t),
          void *opaque, uint64_t *size)
{
  unsigned char *buf;
  uint64_t got;
  int r = 0;

  if (posix_memalign ((void **) &buf, DIGEST_ALIGN, DIGEST_READ) != 0) {
    set_error (ENOMEM, "digest");
    return -1;
  }
  posix_fadvise (fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  for (*size = 0;; *size += got) {
    r = read_at (fd, buf, DIGEST_READ, *size, &got);
    if (r == -1 || got == 0)
      break;
    r = fn (opaque, buf, got, *size);
    if (r == -1)
      break;
  }
  /* The file was just written or is only checked: leave no copy of it
   * in the page cache (clean pages go at once). */
  posix_fadvise (fd, 0, 0, POSIX_FADV_DONTNEED);
  free (buf);
  return r;
}

static int
segments_piece (void *opaque, const unsigned char *p, uint64_t len,
                uint64_t offset)
{
  return digest_wrote (opaque, p, len, offset);
}

int
digest_fd (int fd, char hex[DIGEST_HEX_LEN + 1])
{
  struct digest *d = digest_new ();
  uint64_t size;
  int r = -1;

  if (d != NULL && read_all (fd, segments_piece, d, &size) == 0)
    r = digest_finish (d, fd, size, hex);
  digest_free (d);
  return r;
}

static int
whole_piece (void *opaque, const unsigned char *p, uint64_t len,
             uint64_t offset)
{
  (void) offset;
  XXH3_128bits_update (opaque, p, (size_t) len);
  return 0;
}

int
digest_fd_whole (int fd, char hex[DIGEST_HEX_LEN + 1])
{
  XXH3_state_t *state = XXH3_createState ();
  XXH128_canonical_t c;
  uint64_t size;
  int r;

  if (state == NULL) {
    set_error (ENOMEM, "hash");
    return -1;
  }
  XXH3_128bits_reset (state);
  r = read_all (fd, whole_piece, state, &size);
  if (r == 0) {
    XXH128_canonicalFromHash (&c, XXH3_128bits_digest (state));
    to_hex (&c, hex);
  }
  XXH3_freeState (state);
  return r;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* prefetch.c: a consolidating disk's backing chain read ahead of QEMU's block-stream. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/util.h"
#include "common/vector.h"
#include "internal.h"

/* QEMU 7.2's block-stream copies one 512 KiB chunk at a time, each a
 * read of the backing chain then a write: with cold files every read
 * waits for the disk.  Asking the kernel to read the next window of the
 * chain's data (the clusters each image holds for the guest offsets
 * after the stream's) overlaps the reads with the stream's writes.  The
 * window counts data, not guest bytes (holes cost nothing). */
#define PREFETCH_WINDOW (UINT64_C (256) << 20)

/* Data bytes asked for by the time guest offset end was reached. */
struct mark {
  uint64_t end;
  uint64_t asked;
};
DEFINE_VECTOR_TYPE (mark_vector, struct mark)

/* Images deeper than this are not read ahead (knib's chains are far
 * shorter). */
#define PREFETCH_MAX_LAYERS 64

struct layer {
  int fd;
  struct qcow2_reader *r;
};

struct backup_prefetch {
  struct layer layers[PREFETCH_MAX_LAYERS];
  unsigned n;
  uint64_t done;     /* guest offsets below this were asked for */
  uint64_t asked;    /* data bytes asked for so far */
  mark_vector marks; /* where each call stopped, oldest first */
  uint64_t size;     /* the largest virtual size of the layers */
};

/* The path a backing file name of image means (relative names are
 * relative to image's directory, as QEMU reads them). */
static char *
backing_path (const char *image, const char *name)
{
  CLEANUP_FREE char *copy = strdup (image);

  if (copy == NULL)
    return NULL;
  if (name[0] == '/')
    return str_printf ("%s", name);
  return str_printf ("%s/%s", dirname (copy), name);
}

/* Open path and add it (and its own backing files) as layers; stops
 * quietly at the first one that cannot be read as qcow2. */
static void
add_layers (struct backup_prefetch *p, const char *path)
{
  CLEANUP_FREE char *next = NULL;
  const struct qcow2_info *info;
  struct layer *l;

  while (p->n < PREFETCH_MAX_LAYERS) {
    l = &p->layers[p->n];
    l->fd = open (path, O_RDONLY | O_CLOEXEC);
    if (l->fd == -1) {
      debug (DEBUG_CHAIN, "read-ahead: cannot open '%s': %m", path);
      return;
    }
    l->r = qcow2_reader_new (l->fd);
    if (l->r == NULL) {
      debug (DEBUG_CHAIN, "read-ahead: '%s': %s", path, get_error ());
      error_clear ();
      close (l->fd);
      return;
    }
    p->n++;
    info = qcow2_reader_info (l->r);
    if (info->virtual_size > p->size)
      p->size = info->virtual_size;
    if (info->backing_file == NULL
        || (info->backing_format != NULL
            && strcmp (info->backing_format, "qcow2") != 0))
      return;
    {
      char *more = backing_path (path, info->backing_file);

      free (next);
      next = more;
    }
    if (next == NULL)
      return;
    path = next;
  }
}

struct backup_prefetch *
backup_prefetch_new (const char *image, const char *backing)
{
  struct backup_prefetch *p = calloc (1, sizeof *p);
  CLEANUP_FREE char *path = backing_path (image, backing);

  if (p == NULL || path == NULL) {
    free (p);
    return NULL;
  }
  add_layers (p, path);
  if (p->n == 0) {
    free (p);
    return NULL;
  }
  debug (DEBUG_CHAIN, "read-ahead: %u images below '%s'", p->n, backing);
  return p;
}

/* Ask for the data clusters layer l holds for guest offsets [from, to);
 * the data bytes asked for.  */
static uint64_t
prefetch_layer (struct layer *l, uint64_t from, uint64_t to)
{
  const struct qcow2_info *info = qcow2_reader_info (l->r);
  uint64_t g = from - from % info->cluster_size, asked = 0;

  if (to > info->virtual_size)
    to = info->virtual_size;
  while (g < to) {
    struct qcow2_extent e;

    if (qcow2_reader_map (l->r, g, to - g, &e) == -1) {
      debug (DEBUG_CHAIN, "read-ahead: %s", get_error ());
      error_clear ();
      break;
    }
    if (e.kind == QCOW2_EXTENT_DATA) {
      (void) posix_fadvise (l->fd, (off_t) e.host_offset, (off_t) e.length,
                            POSIX_FADV_WILLNEED);
      asked += e.length;
    }
    g += e.length;
  }
  return asked;
}

/* Data asked for beyond guest offset streamed (as the marks tell). */
static uint64_t
ahead (struct backup_prefetch *p, uint64_t streamed)
{
  uint64_t below = 0;
  size_t k = 0;

  while (k < p->marks.len && p->marks.ptr[k].end <= streamed)
    below = p->marks.ptr[k++].asked;
  /* Marks the stream has passed are no longer needed (keep the last). */
  if (k > 1) {
    memmove (p->marks.ptr, p->marks.ptr + k - 1,
             (p->marks.len - k + 1) * sizeof *p->marks.ptr);
    p->marks.len -= k - 1;
  }
  return p->asked - below;
}

void
backup_prefetch_to (struct backup_prefetch *p, uint64_t streamed)
{
  /* Steps of a window's guest bytes: at most a window of data each. */
  if (p == NULL)
    return;
  if (p->done < streamed)
    p->done = streamed;
  while (p->done < p->size && ahead (p, streamed) < PREFETCH_WINDOW) {
    uint64_t to = p->done + PREFETCH_WINDOW;
    struct mark m;

    for (unsigned i = 0; i < p->n; i++)
      p->asked += prefetch_layer (&p->layers[i], p->done, to);
    p->done = to;
    m.end = to;
    m.asked = p->asked;
    if (mark_vector_append (&p->marks, m) == -1)
      break;
  }
}

void
backup_prefetch_free (struct backup_prefetch *p)
{
  if (p == NULL)
    return;
  for (unsigned i = 0; i < p->n; i++) {
    qcow2_reader_free (p->layers[i].r);
    close (p->layers[i].fd);
  }
  mark_vector_reset (&p->marks);
  free (p);
}

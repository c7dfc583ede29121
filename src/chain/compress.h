/* compress.h: compressing a backup after the fact, in two phases. */
#ifndef KNIB_CHAIN_COMPRESS_H
#define KNIB_CHAIN_COMPRESS_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "chain/chain.h"

/* "knib compress" rewrites the uncompressed images of a backup as
 * compressed qcow2 images with the same backing file, holding the same
 * clusters: the clusters of the image itself are read (never through
 * its backing chain) and each one that shrinks is stored compressed.
 * Two phases, each callable on its own (the agent runs them as jobs):
 *
 * start      Under the VM's exclusive lock, briefly: finish a finalize
 *            that was killed (see below), remove the partial copies of
 *            killed runs, and check the free space.  Then, without the
 *            lock (backups of the VM go on meanwhile), write each disk's
 *            copy beside its image as ".compressing-<image>.XXXXXX"
 *            (locked by its writer while it grows), fsync it, and under
 *            the shared lock rename it to ".compressed-<image>": ready.
 *            A failure, a timeout or an interruption removes the
 *            partial copy; the original is never touched.
 * finalize   Under the VM's exclusive lock (it waits for restores and
 *            verifies to finish, so none sees an image swapped under
 *            it): check every ready copy against its image (sizes,
 *            backing file), hash it, write the new manifest as a journal
 *            ".compress-journal.json", rename each ready copy over its
 *            image, fsync the directory, commit the manifest (sizes
 *            before and after, compression, hash) and remove the
 *            journal.  A finalize killed after the journal is rolled
 *            forward by the next start, finalize or chain_compress_recover.
 *
 * Images that are compressed already are left alone. */

typedef void (*chain_compress_progress_fn) (void *opaque, const char *disk,
                                            uint64_t done, uint64_t total);

struct chain_compress_options {
  const char *vm;                     /* NULL: whichever VM has the backup */
  enum chain_compression compression; /* CHAIN_COMPRESSION_ZLIB or _ZSTD */
  int level;                          /* 0: the library's default */
  unsigned threads;                   /* 0: one per core */
  int64_t rate_limit;                 /* MiB/s written; < 1: no limit */
  /* start: the free space of the backup's file system must be at least
   * min_free times the space the backup's images take, else nothing is
   * written (ENOSPC). */
  double min_free;
  /* Each phase (and chain_compress, both) fails with ETIMEDOUT after
   * this long, waiting for the lock included; <= 0: no limit. */
  int64_t timeout_ms;
  /* Set (by a signal handler) to stop: it fails cleanly (EINTR). */
  volatile sig_atomic_t *cancel;
  chain_compress_progress_fn progress; /* may be NULL */
  void *opaque;
};

struct chain_compress_disk {
  char *name;
  enum chain_compression before; /* what the image was */
  enum chain_compression after;  /* what it is (or will be, after start) */
  uint64_t bytes_before;         /* the image's size before */
  uint64_t bytes_after;          /* its size after (0: unchanged) */
  bool done;                     /* rewritten by this call */
  double seconds;
};

DEFINE_VECTOR_TYPE (chain_compress_disk_vector, struct chain_compress_disk)

struct chain_compress_result {
  char *vm;
  char id[CHAIN_ID_MAX];
  chain_compress_disk_vector disks;
  chain_string_vector notes; /* what recovery did, on the way */
};

void chain_compress_result_release (struct chain_compress_result *r);

/* The start phase for backup id (see above).  Fills r (release it
 * either way). */
int chain_compress_start (struct chain_repo *repo, const char *id,
                          const struct chain_compress_options *o,
                          struct chain_compress_result *r)
  __attribute__ ((warn_unused_result));

/* The finalize phase: swap the ready copies in.  Fails (ENOENT) when an
 * uncompressed disk has no ready copy (nothing is swapped then). */
int chain_compress_finalize (struct chain_repo *repo, const char *id,
                             const struct chain_compress_options *o,
                             struct chain_compress_result *r)
  __attribute__ ((warn_unused_result));

/* Both phases, within one timeout. */
int chain_compress (struct chain_repo *repo, const char *id,
                    const struct chain_compress_options *o,
                    struct chain_compress_result *r)
  __attribute__ ((warn_unused_result));

/* With the VM's exclusive lock: roll forward the finalizes that were
 * killed and remove the partial copies of killed runs, in every backup
 * of the VM; one line per repair goes to done. */
int chain_compress_recover (struct chain_lock *lock, chain_string_vector *done)
  __attribute__ ((warn_unused_result));

#endif

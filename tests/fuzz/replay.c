/* SPDX-License-Identifier: Apache-2.0 */
/* replay.c: runs a fuzz target on files, without libFuzzer (make check replays the corpora).
 *
 * "replay-TARGET [FILE|DIR]..." runs LLVMFuzzerTestOneInput on each
 * file (each file of each directory); without arguments, on each file
 * of $FUZZ_CORPUS_DIR/TARGET.  A crash, a sanitizer report or a
 * valgrind error fails it like any test. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

/* Larger inputs are not corpus files; every target ignores them. */
#define REPLAY_MAX (16u * 1024 * 1024)

static int
replay_file (const char *path)
{
  struct stat st;
  uint8_t *buf;
  size_t n = 0;
  int fd = open (path, O_RDONLY | O_CLOEXEC);

  if (fd == -1 || fstat (fd, &st) == -1) {
    fprintf (stderr, "replay: %s: %s\n", path, strerror (errno));
    if (fd != -1)
      close (fd);
    return -1;
  }
  if (!S_ISREG (st.st_mode) || (uint64_t) st.st_size > REPLAY_MAX) {
    fprintf (stderr, "replay: %s: not a regular file of at most %u bytes\n",
             path, REPLAY_MAX);
    close (fd);
    return -1;
  }
  /* One byte more than needed: malloc (0) may return NULL. */
  buf = malloc (st.st_size + 1);
  if (buf == NULL) {
    perror ("malloc");
    close (fd);
    return -1;
  }
  while (n < (size_t) st.st_size) {
    ssize_t r = read (fd, buf + n, st.st_size - n);

    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0) {
      fprintf (stderr, "replay: %s: short read\n", path);
      free (buf);
      close (fd);
      return -1;
    }
    n += r;
  }
  close (fd);
  LLVMFuzzerTestOneInput (buf, n);
  free (buf);
  return 0;
}

static int
by_name (const struct dirent **a, const struct dirent **b)
{
  return strcmp ((*a)->d_name, (*b)->d_name);
}

static int
skip_dots (const struct dirent *e)
{
  return e->d_name[0] != '.';
}

/* Each file of dir, in name order (a failure names the same file on
 * every run). */
static int
replay_dir (const char *dir, unsigned *count)
{
  struct dirent **names;
  int n = scandir (dir, &names, skip_dots, by_name);
  int r = 0;

  if (n == -1) {
    fprintf (stderr, "replay: %s: %s\n", dir, strerror (errno));
    return -1;
  }
  for (int i = 0; i < n; i++) {
    char *path = NULL;

    if (r == 0 && asprintf (&path, "%s/%s", dir, names[i]->d_name) == -1) {
      perror ("asprintf");
      r = -1;
    }
    if (r == 0) {
      r = replay_file (path);
      ++*count;
    }
    free (path);
    free (names[i]);
  }
  free (names);
  return r;
}

static int
replay_path (const char *path, unsigned *count)
{
  struct stat st;

  if (stat (path, &st) == 0 && S_ISDIR (st.st_mode))
    return replay_dir (path, count);
  ++*count;
  return replay_file (path);
}

int
main (int argc, char **argv)
{
  char *self = strdup (argv[0]);
  const char *target = self ? basename (self) : "";
  unsigned count = 0;

  if (strncmp (target, "replay-", 7) == 0)
    target += 7;
  if (argc > 1) {
    for (int i = 1; i < argc; i++)
      if (replay_path (argv[i], &count) == -1) {
        free (self);
        return 1;
      }
  }
  else {
    const char *root = getenv ("FUZZ_CORPUS_DIR");
    char *dir = NULL;
    int r;

    if (root == NULL) {
      fprintf (stderr, "replay: set FUZZ_CORPUS_DIR or name the inputs\n");
      free (self);
      return 1;
    }
    if (asprintf (&dir, "%s/%s", root, target) == -1) {
      perror ("asprintf");
      free (self);
      return 1;
    }
    r = replay_dir (dir, &count);
    free (dir);
    if (r == -1) {
      free (self);
      return 1;
    }
  }
  printf ("replay %s: %u inputs, no crash\n", target, count);
  free (self);
  return count > 0 ? 0 : 1;
}

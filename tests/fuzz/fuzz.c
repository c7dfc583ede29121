/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz.c: input helpers shared by the fuzz targets. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"

int
fuzz_memfd (const uint8_t *data, size_t size)
{
  int fd = memfd_create ("fuzz-input", MFD_CLOEXEC);
  size_t done = 0;

  if (fd == -1) {
    perror ("memfd_create");
    abort ();
  }
  while (done < size) {
    ssize_t r = write (fd, data + done, size - done);

    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0) {
      perror ("write to a memfd");
      abort ();
    }
    done += r;
  }
  if (lseek (fd, 0, SEEK_SET) == -1) {
    perror ("lseek");
    abort ();
  }
  return fd;
}

void
fuzz_fd_path (int fd, char path[FUZZ_FD_PATH_MAX])
{
  snprintf (path, FUZZ_FD_PATH_MAX, "/proc/self/fd/%d", fd);
}

static char file_dir[64];
static char file_path[96];

static void
file_remove (void)
{
  unlink (file_path);
  rmdir (file_dir);
}

const char *
fuzz_file (const uint8_t *data, size_t size)
{
  return fuzz_file_named ("input", data, size);
}

const char *
fuzz_file_named (const char *name, const uint8_t *data, size_t size)
{
  int fd;

  if (file_dir[0] == '\0') {
    const char *tmp = access ("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

    snprintf (file_dir, sizeof file_dir, "%s/knib-fuzz-XXXXXX", tmp);
    if (mkdtemp (file_dir) == NULL) {
      perror ("mkdtemp");
      abort ();
    }
    snprintf (file_path, sizeof file_path, "%s/%s", file_dir, name);
    atexit (file_remove);
  }
  fd = open (file_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd == -1) {
    perror (file_path);
    abort ();
  }
  for (size_t done = 0; done < size;) {
    ssize_t r = write (fd, data + done, size - done);

    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0) {
      perror (file_path);
      abort ();
    }
    done += r;
  }
  close (fd);
  return file_path;
}

void
fuzz_send_all (int fd, const void *data, size_t size)
{
  const char *p = data;

  while (size > 0) {
    ssize_t r = send (fd, p, size, MSG_NOSIGNAL);

    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0)
      return;
    p += r;
    size -= r;
  }
}

const char *
fuzz_file_dir (void)
{
  return file_dir;
}

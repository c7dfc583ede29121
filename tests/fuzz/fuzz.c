/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz.c: input helpers shared by the fuzz targets. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
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

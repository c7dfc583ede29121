/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-conf.c: fuzz target: knib.conf, read as a file. */
#include <config.h>

#include <unistd.h>

#include "common/conf.h"
#include "common/error.h"
#include "fuzz.h"

#define MAX_INPUT (64u * 1024)

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char path[FUZZ_FD_PATH_MAX];
  struct knib_config cfg;
  int fd;

  if (size > MAX_INPUT)
    return 0;
  fd = fuzz_memfd (data, size);
  fuzz_fd_path (fd, path);
  config_init (&cfg);
  if (config_load (&cfg, path, true) == -1)
    (void) get_error ();
  close (fd);
  error_clear ();
  return 0;
}

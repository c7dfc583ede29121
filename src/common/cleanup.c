/* SPDX-License-Identifier: Apache-2.0 */
/* cleanup.c: the functions behind the CLEANUP_* attributes. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cleanup.h"

void
cleanup_free (void *ptr)
{
  free (*(void **) ptr);
}

void
cleanup_close (int *fd)
{
  int saved = errno;

  if (*fd >= 0)
    close (*fd);
  errno = saved;
}

void
cleanup_fclose (FILE **fp)
{
  int saved = errno;

  if (*fp != NULL)
    fclose (*fp);
  errno = saved;
}

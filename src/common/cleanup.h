/* SPDX-License-Identifier: Apache-2.0 */
/* cleanup.h: scoped cleanup attributes so error paths are a plain return. */
#ifndef KNIB_COMMON_CLEANUP_H
#define KNIB_COMMON_CLEANUP_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void cleanup_free (void *ptr);
void cleanup_close (int *fd);
void cleanup_fclose (FILE **fp);

#define CLEANUP_FREE __attribute__ ((cleanup (cleanup_free)))
#define CLEANUP_CLOSE __attribute__ ((cleanup (cleanup_close)))
#define CLEANUP_FCLOSE __attribute__ ((cleanup (cleanup_fclose)))

/* Take a value out of a scoped variable so its cleanup leaves it alone. */
#define STEAL_PTR(p)                                                           \
  ({                                                                           \
    __typeof__ (p) _stolen = (p);                                              \
    (p) = NULL;                                                                \
    _stolen;                                                                   \
  })
#define STEAL_FD(fd)                                                           \
  ({                                                                           \
    int _stolen = (fd);                                                        \
    (fd) = -1;                                                                 \
    _stolen;                                                                   \
  })

#define WARN_UNUSED __attribute__ ((warn_unused_result))

#endif
